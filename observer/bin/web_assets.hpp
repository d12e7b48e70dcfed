#pragma once

// The page's files, compiled in (observer/web/embed.cmake generates the
// definition from observer/web/).

#include <string_view>
#include <vector>

namespace otpd::observer::web {

struct asset {
  const char* path;  // the URL path
  std::string_view body;
  const char* content_type;
};

[[nodiscard]] const std::vector<asset>& assets();

}  // namespace otpd::observer::web
