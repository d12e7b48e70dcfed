// otpd.yaml(5) documents exactly the keys the config loader accepts: each
// "## SECTION" of man/otpd.yaml.5.scd lists its keys as lines "*key*", and
// each section matches one of otpd::supervisor::config_keys.
#include <fstream>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include <otpd/supervisor/config.hpp>

namespace {

namespace keys = otpd::supervisor::config_keys;
using key_set = std::set<std::string, std::less<>>;

// Section title in the man page -> the keys the loader accepts there.
std::map<std::string, key_set> loader_sections() {
  auto set = [](std::span<const std::string_view> k) { return key_set(k.begin(), k.end()); };
  return {
      {"TOP LEVEL", set(keys::top)},
      {"NODE", set(keys::node)},
      {"CONTROL", set(keys::control)},
      {"ROOT SUPERVISOR", set(keys::root_supervisor)},
      {"NESTED SUPERVISOR", set(keys::supervisor_child)},
      {"WORKER", set(keys::worker)},
      {"OUTPUT", set(keys::output)},
      {"READINESS", set(keys::readiness)},
      {"LIVENESS", set(keys::liveness)},
      {"BACKOFF", set(keys::backoff)},
      {"RLIMITS", set(keys::rlimits)},
      {"LIMITS", set(keys::limits)},
  };
}

// The keys of each "## TITLE" section under "# KEYS": lines that are just
// "*key*" (scdoc's bold term of a definition).
std::map<std::string, key_set> documented_sections(const std::string& file) {
  std::ifstream in(file);
  std::map<std::string, key_set> out;
  std::string line;
  std::string section;
  bool in_keys = false;
  while (std::getline(in, line)) {
    if (line.starts_with("# ")) {
      in_keys = line == "# KEYS";
      section.clear();
    } else if (in_keys && line.starts_with("## ")) {
      section = line.substr(3);
      out[section];
    } else if (!section.empty() && line.size() > 2 && line.front() == '*' && line.back() == '*' &&
               line.find(' ') == std::string::npos) {
      out[section].insert(line.substr(1, line.size() - 2));
    }
  }
  return out;
}

std::string man_page() {
  return std::string(OTPD_SOURCE_DIR) + "/man/otpd.yaml.5.scd";
}

TEST(ConfigManPage, DocumentsEveryAcceptedKey) {
  auto documented = documented_sections(man_page());
  ASSERT_FALSE(documented.empty()) << "no '# KEYS' sections in " << man_page();
  for (const auto& [section, accepted] : loader_sections()) {
    ASSERT_TRUE(documented.contains(section)) << "otpd.yaml(5) has no '## " << section << "'";
    for (const auto& k : accepted) {
      EXPECT_TRUE(documented[section].contains(k))
          << "the loader accepts " << section << " key '" << k << "'; otpd.yaml(5) omits it";
    }
  }
}

TEST(ConfigManPage, DocumentsNoKeyTheLoaderRejects) {
  auto accepted = loader_sections();
  for (const auto& [section, documented] : documented_sections(man_page())) {
    ASSERT_TRUE(accepted.contains(section))
        << "otpd.yaml(5) section '## " << section << "' matches no list in config_keys";
    for (const auto& k : documented) {
      EXPECT_TRUE(accepted[section].contains(k))
          << "otpd.yaml(5) documents " << section << " key '" << k << "'; the loader rejects it";
    }
  }
}

// The lists are what the loader checks, not a copy: a documented key is
// accepted, and a key outside them is refused.
TEST(ConfigManPage, KeyListsAreWhatTheLoaderChecks) {
  auto ok = otpd::supervisor::parse_config(
      "node: {name: n, path: [/bin]}\n"
      "supervisor: {strategy: one_for_one, children: [{id: a, command: [true], "
      "stdout: {file: /tmp/x, rotate: false}, backoff: {jitter: 0.2}, "
      "readiness: {command: [true], interval: 5}}]}\n",
      "test.yaml");
  EXPECT_TRUE(ok) << ok.message();
  for (std::string_view k : keys::node) {
    std::string text = std::string("node: {") + std::string(k) + ": x, bogus: 1}\n" +
                       "supervisor: {strategy: one_for_one}\n";
    auto r = otpd::supervisor::parse_config(text, "test.yaml");
    ASSERT_FALSE(r);
    EXPECT_NE(r.message().find("node.bogus: unknown key"), std::string::npos) << r.message();
  }
}

}  // namespace
