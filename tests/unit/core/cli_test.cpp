#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <otpd/core/cli.hpp>

namespace cli = otpd::core::cli;

namespace {

std::optional<int> parse(cli::app& app, std::vector<const char*> args) {
  args.insert(args.begin(), "prog");
  return app.parse(static_cast<int>(args.size()), args.data());
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST(Cli, ParsesEveryType) {
  cli::app app{"test"};
  std::string s;
  int i = 0;
  long l = 0;
  long long ll = 0;
  unsigned u = 0;
  unsigned long ul = 0;
  unsigned long long ull = 0;
  double d = 0;
  std::vector<std::string> rest;
  bool f = false;
  bool unset = false;
  app.add("--s", s);
  app.add("--i", i);
  app.add("--l", l);
  app.add("--ll", ll);
  app.add("--u", u);
  app.add("--ul", ul);
  app.add("--ull", ull);
  app.add("-d,--double", d);
  app.flag("-f", f);
  app.flag("--unset", unset);
  app.add("rest", rest);
  EXPECT_EQ(parse(app, {"--s", "text", "--i", "-3", "--l", "-4", "--ll", "-5", "--u", "6", "--ul",
                        "7", "--ull=8", "-d", "1.5", "-f", "a", "b"}),
            std::nullopt);
  EXPECT_EQ(s, "text");
  EXPECT_EQ(i, -3);
  EXPECT_EQ(l, -4);
  EXPECT_EQ(ll, -5);
  EXPECT_EQ(u, 6U);
  EXPECT_EQ(ul, 7UL);
  EXPECT_EQ(ull, 8ULL);
  EXPECT_EQ(d, 1.5);
  EXPECT_TRUE(f);
  EXPECT_FALSE(unset);
  EXPECT_EQ(rest, (std::vector<std::string>{"a", "b"}));
}

TEST(Cli, HelpGoesToStdoutAndReturnsZeroWithoutHiddenOptions) {
  cli::app app{"the description"};
  int port = 0;
  int secret = 0;
  app.add("--port", port, "port to listen on");
  app.add("--secret", secret).hidden();
  testing::internal::CaptureStdout();
  EXPECT_EQ(parse(app, {"--help"}), 0);
  std::string out = testing::internal::GetCapturedStdout();
  EXPECT_TRUE(contains(out, "the description")) << out;
  EXPECT_TRUE(contains(out, "--port INT")) << out;
  EXPECT_TRUE(contains(out, "port to listen on")) << out;
  EXPECT_FALSE(contains(out, "--secret"));
}

TEST(Cli, ErrorsGoToStderrWithANonZeroCode) {
  cli::app app{"test"};
  std::string config;
  app.add("config", config, "YAML config file").required();
  testing::internal::CaptureStderr();
  auto rc = parse(app, {});
  std::string err = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(rc.has_value());
  EXPECT_NE(*rc, 0);
  EXPECT_TRUE(contains(err, "config is required")) << err;
  EXPECT_TRUE(contains(err, "Run with --help for more information.")) << err;

  cli::app number{"test"};
  int n = 0;
  number.add("-n", n);
  testing::internal::CaptureStderr();
  EXPECT_NE(parse(number, {"-n", "many"}).value_or(0), 0);
  std::string bad_number = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(contains(bad_number, "many")) << bad_number;
  cli::app other{"test"};
  testing::internal::CaptureStderr();
  EXPECT_NE(parse(other, {"--unknown"}).value_or(0), 0);
  std::string unknown = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(contains(unknown, "--unknown")) << unknown;
}

TEST(Cli, ChecksRejectValuesOutsideTheirRule) {
  auto rejects = [](auto rule, const char* value) {
    cli::app app{"test"};
    int x = 0;
    rule(app.add("-x", x));
    testing::internal::CaptureStderr();
    auto rc = parse(app, {"-x", value});
    testing::internal::GetCapturedStderr();
    return rc.has_value() && *rc != 0;
  };
  auto positive = [](cli::option o) { o.positive(); };
  auto non_negative = [](cli::option o) { o.non_negative(); };
  auto port = [](cli::option o) { o.range(0, 65535); };
  EXPECT_TRUE(rejects(positive, "0"));
  EXPECT_FALSE(rejects(positive, "1"));
  EXPECT_TRUE(rejects(non_negative, "-1"));
  EXPECT_FALSE(rejects(non_negative, "0"));
  EXPECT_TRUE(rejects(port, "65536"));
  EXPECT_TRUE(rejects(port, "-1"));
  EXPECT_FALSE(rejects(port, "65535"));

  cli::app app{"test"};
  std::string format = "text";
  app.add("--log-format", format).one_of({"text", "json"});
  testing::internal::CaptureStderr();
  EXPECT_NE(parse(app, {"--log-format", "xml"}).value_or(0), 0);
  std::string not_member = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(contains(not_member, "xml not in {text,json}")) << not_member;
  cli::app again{"test"};
  again.add("--log-format", format).one_of({"text", "json"});
  EXPECT_EQ(parse(again, {"--log-format", "json"}), std::nullopt);
  EXPECT_EQ(format, "json");
}

TEST(Cli, SubcommandsRunTheirCallbackAndReportWhetherGiven) {
  cli::app app{"test"};
  app.require_subcommand(1);
  std::string ran;
  std::string id;
  auto start = app.subcommand("start", "start a child");
  start.add("id", id).required();
  start.on_parsed([&ran] { ran = "start"; });
  auto stop = app.subcommand("stop", "stop a child");
  stop.on_parsed([&ran] { ran = "stop"; });
  EXPECT_EQ(parse(app, {"start", "web"}), std::nullopt);
  EXPECT_EQ(ran, "start");
  EXPECT_EQ(id, "web");
  EXPECT_TRUE(start.parsed());
  EXPECT_FALSE(stop.parsed());

  cli::app none{"test"};
  none.require_subcommand(1);
  none.subcommand("list");
  testing::internal::CaptureStderr();
  EXPECT_NE(parse(none, {}).value_or(0), 0);
  std::string none_given = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(contains(none_given, "subcommand")) << none_given;
}

TEST(Cli, PrefixCommandLeavesTheRestUnparsed) {
  cli::app app{"test"};
  std::string pool;
  unsigned timeout_ms = 0;
  app.add("--timeout-ms", timeout_ms);
  app.add("pool", pool).required();
  app.prefix_command();
  EXPECT_EQ(parse(app, {"--timeout-ms", "5", "redis", "SET", "k", "--v"}), std::nullopt);
  EXPECT_EQ(pool, "redis");
  EXPECT_EQ(timeout_ms, 5U);
  EXPECT_EQ(app.remaining(), (std::vector<std::string>{"SET", "k", "--v"}));
}
