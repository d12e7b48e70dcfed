#include "request.hpp"

#include <otpd/runtime/term.hpp>
#include <otpd/workers/cache_request.hpp>

namespace otpd::workers {

using detail::is_request;

core::Result<cache_call> decode_cache_call(std::string_view body) noexcept {
  auto oh = runtime::decode_term(body);
  if (!oh) {
    return oh.error();
  }
  const msgpack::object& o = oh->get();
  try {
    if (is_request(o, "get", 2)) {
      return cache_call{cache_op::get, runtime::pack(o.via.array.ptr[1])};
    }
    if (is_request(o, "delete", 2)) {
      return cache_call{cache_op::erase, runtime::pack(o.via.array.ptr[1])};
    }
    if (is_request(o, "size", 1)) {
      return cache_call{cache_op::size, {}};
    }
  } catch (...) {  // only bad_alloc can come out of pack
  }
  return core::errc::malformed;
}

core::Result<cache_put> decode_cache_cast(std::string_view body) noexcept {
  auto oh = runtime::decode_term(body);
  if (!oh) {
    return oh.error();
  }
  const msgpack::object& o = oh->get();
  if (!is_request(o, "put", 3) && !is_request(o, "put", 4)) {
    return core::errc::malformed;
  }
  try {
    const auto* a = o.via.array.ptr;
    cache_put put{runtime::pack(a[1]), runtime::pack(a[2]), std::nullopt};
    if (o.via.array.size == 4) {
      if (a[3].type == msgpack::type::POSITIVE_INTEGER) {
        if (a[3].via.u64 > 0) {
          put.ttl = a[3].via.u64 > static_cast<std::uint64_t>(max_ttl.count())
                        ? max_ttl
                        : std::chrono::milliseconds(static_cast<std::int64_t>(a[3].via.u64));
        }
      } else if (a[3].type != msgpack::type::NEGATIVE_INTEGER) {
        return core::errc::malformed;  // a ttl that is not an integer
      }
    }
    return put;
  } catch (...) {
    return core::errc::malformed;
  }
}

}  // namespace otpd::workers
