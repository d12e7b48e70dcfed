// shm_table and persistent_term on arbitrary segment bytes: the input is
// written to a real segment under /dev/shm, which is then opened, verified
// and read (and written) as any process of the node would. The first byte
// picks how the rest is used:
//   0  the whole table segment, byte for byte (open must refuse or cope);
//   1  patches over a valid set's image (a real table with entries),
//   2  patches over a valid ordered_set's image,
//   3  patches over a valid persistent_term area;
// a patch is [u32 offset][u8 length][length bytes], the offset taken modulo
// the image's size, so that the fuzzer reaches past the header's checks.
// Waits are set to 1 ms: a garbage lock word costs that much, not 2 s. An
// image whose magic word is 0 is skipped: open waits (2 s) for the creator
// of such a segment to publish it, which is no finding and only slows the
// fuzzer down.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <otpd/shm_table/persistent_term.hpp>
#include <otpd/shm_table/table.hpp>

namespace st = otpd::shm_table;
using namespace std::chrono_literals;

namespace {

const std::string& node() {
  static const std::string n = "fz" + std::to_string(::getpid());
  return n;
}

std::vector<char> read_segment(const std::string& name) {
  std::vector<char> out;
  int fd = ::shm_open(("/" + name).c_str(), O_RDONLY, 0);
  if (fd < 0) {
    return out;
  }
  off_t n = ::lseek(fd, 0, SEEK_END);
  out.resize(static_cast<std::size_t>(n));
  if (::pread(fd, out.data(), out.size(), 0) != n) {
    out.clear();
  }
  ::close(fd);
  return out;
}

bool write_segment(const std::string& name, const char* p, std::size_t n) {
  std::uint64_t magic = 0;
  if (n >= sizeof magic) {
    std::memcpy(&magic, p, sizeof magic);
    if (magic == 0) {
      return false;
    }
  }
  std::string slash = "/" + name;
  ::shm_unlink(slash.c_str());
  int fd = ::shm_open(slash.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) {
    return false;
  }
  bool ok = ::fchmod(fd, 0600) == 0 && ::write(fd, p, n) == static_cast<ssize_t>(n);
  ::close(fd);
  return ok;
}

// A real table's bytes, made once.
std::vector<char> table_image(st::table_type type) {
  std::string name = type == st::table_type::set ? "tset" : "tord";
  (void)st::table::remove(node(), name);
  st::table_options o;
  o.type = type;
  o.access = st::access_mode::public_table;
  o.policy = st::eviction::lru;
  o.max_entries = 16;
  o.max_item_bytes = 32;
  o.stripes = type == st::table_type::set ? 2 : 1;
  {
    auto t = st::table::create(node(), name, o);
    if (!t) {
      return {};
    }
    for (int i = 0; i < 12; ++i) {
      (void)t->insert("k" + std::to_string(i), "value" + std::to_string(i));
    }
    (void)t->erase("k3");
  }
  auto img = read_segment(st::segment_name(node(), name));
  (void)st::table::remove(node(), name);
  return img;
}

std::vector<char> terms_image() {
  (void)st::persistent_term::remove(node(), "tmpl");
  {
    auto p = st::persistent_term::open(node(), "tmpl");
    if (!p) {
      return {};
    }
    (void)p->put("size", "4");
    (void)p->put("member", "a value");
    (void)p->erase("size");
    (void)p->put("size", "5");
  }
  auto img = read_segment("otpd-pt." + node() + ".tmpl");
  (void)st::persistent_term::remove(node(), "tmpl");
  return img;
}

void patch(std::vector<char>& img, const std::uint8_t* d, std::size_t n) {
  while (n >= 5 && !img.empty()) {
    std::uint32_t off = 0;
    std::memcpy(&off, d, 4);
    std::size_t len = d[4];
    d += 5;
    n -= 5;
    len = std::min(len, n);
    off %= static_cast<std::uint32_t>(img.size());
    len = std::min<std::size_t>(len, img.size() - off);
    std::memcpy(img.data() + off, d, len);
    d += len;
    n -= len;
  }
}

void exercise_table() {
  auto t = st::table::open(node(), "t");
  if (!t) {
    return;
  }
  t->set_wait(1ms);
  std::string why;
  (void)t->verify(&why);
  std::string out;
  for (int i = 0; i < 14; ++i) {
    (void)t->lookup_checked("k" + std::to_string(i), out);
  }
  (void)t->member("k1");
  (void)t->select([](std::string_view, std::string_view) { return true; });
  t->fold([](const st::entry&) {});
  (void)t->first();
  (void)t->last();
  (void)t->next("k2");
  (void)t->range("k1", "k5");
  (void)t->insert("k4", "new");
  (void)t->insert("k5", "a value as long as the slot");
  (void)t->erase("k6");
  (void)t->take("k7");
  (void)t->update_counter("ctr", 3);
  (void)t->sweep();
  (void)t->select_delete([](std::string_view k, std::string_view) { return k == "k8"; });
  (void)t->info();
  (void)t->verify(&why);
}

void exercise_terms() {
  auto p = st::persistent_term::open(node(), "p");
  if (!p) {
    return;
  }
  p->set_wait(1ms);
  std::string out;
  (void)p->get_checked("size", out);
  (void)p->get("member");
  (void)p->all();
  std::string why;
  (void)p->verify(&why);
  (void)p->put("size", "6");
  (void)p->erase("member");
  (void)p->verify(&why);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::vector<char> set_img = table_image(st::table_type::set);
  static const std::vector<char> ord_img = table_image(st::table_type::ordered_set);
  static const std::vector<char> pt_img = terms_image();
  if (size < 1) {
    return 0;
  }
  std::uint8_t mode = data[0] % 4;
  ++data;
  --size;
  std::string tname = st::segment_name(node(), "t");
  std::string pname = "otpd-pt." + node() + ".p";
  if (mode == 0) {
    if (size > 0 && write_segment(tname, reinterpret_cast<const char*>(data), size)) {
      exercise_table();
    }
  } else if (mode == 1 || mode == 2) {
    std::vector<char> img = mode == 1 ? set_img : ord_img;
    patch(img, data, size);
    if (write_segment(tname, img.data(), img.size())) {
      exercise_table();
    }
  } else {
    std::vector<char> img = pt_img;
    patch(img, data, size);
    if (write_segment(pname, img.data(), img.size())) {
      exercise_terms();
    }
  }
  ::shm_unlink(("/" + tname).c_str());
  ::shm_unlink(("/" + pname).c_str());
  return 0;
}
