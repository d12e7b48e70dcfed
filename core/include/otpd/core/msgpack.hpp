#pragma once

// msgpack-cxx as otpd uses it: what <msgpack.hpp> includes (the object
// model, pack, parse and unpack, the buffers) and every standard-library
// adaptor, but not the Boost adaptors (fusion, variant, optional,
// string_ref/string_view) nor the X3 parser. Those pull in Boost.Fusion and
// Boost.Variant, about 0.5 CPU-s of parsing in every file that includes
// <msgpack.hpp>, and no otpd message uses them. A worker that packs a Boost
// type includes <msgpack.hpp> (or the adaptor's header) itself.
//
// The list follows msgpack/type.hpp of msgpack-cxx 4.1 (Debian 12).
//
// -Wmismatched-new-delete is off inside these headers: msgpack::zone pairs
// its own operator new (malloc) with its own operator delete (free), and
// g++ 12, once both are inlined (at -Og, the Dev build), reports that free
// as mismatched with a `new msgpack::zone`. A false positive in msgpack's
// code; the warning stays on for otpd's own.

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#include <msgpack/adaptor/array_ref.hpp>
#include <msgpack/adaptor/bool.hpp>
#include <msgpack/adaptor/carray.hpp>
#include <msgpack/adaptor/char_ptr.hpp>
#include <msgpack/adaptor/complex.hpp>
#include <msgpack/adaptor/cpp11/array.hpp>
#include <msgpack/adaptor/cpp11/array_char.hpp>
#include <msgpack/adaptor/cpp11/array_unsigned_char.hpp>
#include <msgpack/adaptor/cpp11/chrono.hpp>
#include <msgpack/adaptor/cpp11/forward_list.hpp>
#include <msgpack/adaptor/cpp11/reference_wrapper.hpp>
#include <msgpack/adaptor/cpp11/shared_ptr.hpp>
#include <msgpack/adaptor/cpp11/timespec.hpp>
#include <msgpack/adaptor/cpp11/tuple.hpp>
#include <msgpack/adaptor/cpp11/unique_ptr.hpp>
#include <msgpack/adaptor/cpp11/unordered_map.hpp>
#include <msgpack/adaptor/cpp11/unordered_set.hpp>
#include <msgpack/adaptor/cpp17/array_byte.hpp>
#include <msgpack/adaptor/cpp17/byte.hpp>
#include <msgpack/adaptor/cpp17/carray_byte.hpp>
#include <msgpack/adaptor/cpp17/optional.hpp>
#include <msgpack/adaptor/cpp17/string_view.hpp>
#include <msgpack/adaptor/cpp17/vector_byte.hpp>
#include <msgpack/adaptor/cpp20/span.hpp>
#include <msgpack/adaptor/define.hpp>
#include <msgpack/adaptor/deque.hpp>
#include <msgpack/adaptor/ext.hpp>
#include <msgpack/adaptor/fixint.hpp>
#include <msgpack/adaptor/float.hpp>
#include <msgpack/adaptor/int.hpp>
#include <msgpack/adaptor/list.hpp>
#include <msgpack/adaptor/map.hpp>
#include <msgpack/adaptor/msgpack_tuple.hpp>
#include <msgpack/adaptor/nil.hpp>
#include <msgpack/adaptor/pair.hpp>
#include <msgpack/adaptor/raw.hpp>
#include <msgpack/adaptor/set.hpp>
#include <msgpack/adaptor/size_equal_only.hpp>
#include <msgpack/adaptor/string.hpp>
#include <msgpack/adaptor/v4raw.hpp>
#include <msgpack/adaptor/vector.hpp>
#include <msgpack/adaptor/vector_bool.hpp>
#include <msgpack/adaptor/vector_char.hpp>
#include <msgpack/adaptor/vector_unsigned_char.hpp>
#include <msgpack/adaptor/wstring.hpp>
#include <msgpack/cpp_config.hpp>
#include <msgpack/iterator.hpp>
#include <msgpack/null_visitor.hpp>
#include <msgpack/object.hpp>
#include <msgpack/pack.hpp>
#include <msgpack/parse.hpp>
#include <msgpack/sbuffer.hpp>
#include <msgpack/unpack.hpp>
#include <msgpack/version.hpp>
#include <msgpack/vrefbuffer.hpp>
#include <msgpack/zone.hpp>
#pragma GCC diagnostic pop
