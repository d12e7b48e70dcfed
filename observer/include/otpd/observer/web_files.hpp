#pragma once

// The files otpd-web keeps in the runtime dir (mode 0700, the node's user):
//
//   DIR/web.token   the access token (0600): every HTTP request must carry it
//   DIR/web.url     where otpd-web listens, e.g. http://127.0.0.1:41234/
//
// `otpctl web` joins the two into the URL to open.

#include <string>

#include <otpd/core/result.hpp>

namespace otpd::observer {

[[nodiscard]] std::string web_token_file(const std::string& runtime_dir);
[[nodiscard]] std::string web_url_file(const std::string& runtime_dir);

// The URL with the token (http://127.0.0.1:PORT/?token=...). Errors name
// the file that is missing or unreadable (otpd-web is not running).
[[nodiscard]] core::Result<std::string> web_login_url(const std::string& runtime_dir);

// The token in DIR/web.token when it is a regular 0600 file of ours with a
// well-formed token; else a new random one written there (atomically, 0600).
[[nodiscard]] core::Result<std::string> load_or_create_token(const std::string& runtime_dir);

}  // namespace otpd::observer
