#include <otpd/shm_table/cache.hpp>

namespace otpd::shm_table {

Result<cache_client> cache_client::attach(std::string_view node, std::string_view name) {
  auto t = table::open(node, name);
  if (!t) {
    return t.error();
  }
  return cache_client(std::move(*t));
}

}  // namespace otpd::shm_table
