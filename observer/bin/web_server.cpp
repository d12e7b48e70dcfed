#include "web_server.hpp"

#include <fcntl.h>
#include <httplib.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "web_assets.hpp"
#include <fmt/format.h>

#include <otpd/core/ready.hpp>
#include <otpd/core/runtime_dir.hpp>
#include <otpd/core/unique_fd.hpp>
#include <otpd/observer/metrics.hpp>
#include <otpd/observer/web_files.hpp>
#include <otpd/observer/web_json.hpp>
#include <otpd/protocol/control.hpp>

namespace otpd::observer::web {

namespace proto = otpd::protocol;
using namespace std::chrono_literals;

// ---- broadcaster -----------------------------------------------------------------

void broadcaster::publish(std::string text) {
  {
    std::lock_guard lk(mu_);
    ring_.push_back({++seq_, std::move(text)});
    while (ring_.size() > ring_size) {
      ring_.pop_front();
    }
  }
  cv_.notify_all();
}

std::deque<broadcaster::message> broadcaster::wait_after(std::uint64_t seq,
                                                         std::chrono::milliseconds timeout,
                                                         bool* lost) {
  std::unique_lock lk(mu_);
  cv_.wait_for(lk, timeout, [&] { return stopped_ || seq_ > seq; });
  *lost = !ring_.empty() && ring_.front().seq > seq + 1;
  std::deque<message> out;
  for (const auto& m : ring_) {
    if (m.seq > seq) {
      out.push_back(m);
    }
  }
  return out;
}

std::uint64_t broadcaster::last_seq() {
  std::lock_guard lk(mu_);
  return seq_;
}

void broadcaster::stop() {
  {
    std::lock_guard lk(mu_);
    stopped_ = true;
  }
  cv_.notify_all();
}

bool broadcaster::stopped() {
  std::lock_guard lk(mu_);
  return stopped_;
}

// ---- server ----------------------------------------------------------------------

namespace {

// Equal without an early exit: the time taken says nothing of where a
// guessed token first differs.
bool same_secret(const std::string& a, const std::string& b) {
  if (a.size() != b.size() || a.empty()) {
    return false;
  }
  unsigned char d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    d |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return d == 0;
}

std::string cookie_value(const httplib::Request& req, const std::string& name) {
  for (std::size_t i = 0; i < req.get_header_value_count("Cookie"); ++i) {
    std::string h = req.get_header_value("Cookie", i);
    std::size_t pos = 0;
    while (pos < h.size()) {
      std::size_t end = h.find(';', pos);
      if (end == std::string::npos) {
        end = h.size();
      }
      std::string part = h.substr(pos, end - pos);
      auto first = part.find_first_not_of(' ');
      if (first != std::string::npos) {
        part.erase(0, first);
      }
      if (part.rfind(name + "=", 0) == 0) {
        return part.substr(name.size() + 1);
      }
      pos = end + 1;
    }
  }
  return {};
}

std::string sse(const char* event, const std::string& data) {
  return fmt::format("event: {}\ndata: {}\n\n", event, data);
}

void json_reply(httplib::Response& res, const json& j, int status = 200) {
  res.status = status;
  res.set_content(dump_safe(j), "application/json");
}

}  // namespace

struct server::impl {
  options opts;
  std::string token;
  std::string csrf;
  std::string cookie_name;
  httplib::Server http;
  broadcaster bc;
  std::atomic<int> streams{0};
  std::atomic<bool> stopping{false};
  core::unique_fd wake_r, wake_w;  // wakes the pump thread on stop

  std::mutex session_mu;  // the session: the pump thread and actions
  session sess;
  std::mutex snap_mu;  // the latest snapshot, for every reader
  std::shared_ptr<const snapshot> current = std::make_shared<snapshot>();
  std::string otpd_state = "connecting";
  // /metrics of a big tree costs prometheus-cpp tens of µs a child: while
  // someone scrapes (in the last 5 minutes), the pump renders it once a
  // tick, off the request path, and a scrape answers with the latest text
  // (at most one tick old); only the first scrape renders on its own.
  std::mutex metrics_mu;
  std::shared_ptr<const std::string> metrics_text;
  std::int64_t metrics_at = 0;  // steady_ms of metrics_text
  std::atomic<std::int64_t> last_scrape{0};

  std::shared_ptr<const std::string> render_and_cache() {
    auto text = std::make_shared<const std::string>(render_metrics(*snap()));
    std::lock_guard lk(metrics_mu);
    metrics_text = text;
    metrics_at = steady_ms();
    return text;
  }

  explicit impl(options o) : opts(std::move(o)), sess(opts.runtime_dir) {}

  std::shared_ptr<const snapshot> snap() {
    std::lock_guard lk(snap_mu);
    return current;
  }

  // With session_mu held.
  void publish_tree() {
    auto s = std::make_shared<const snapshot>(sess.tree().snap());
    {
      std::lock_guard lk(snap_mu);
      current = s;
    }
    json j = snapshot_json(*s);
    j["otpd"] = otpd_state;
    bc.publish(sse("tree", dump_safe(j)));
  }

  void pump_loop() {
    std::int64_t next_tick = 0;
    std::int64_t next_open = 0;
    std::int64_t last_tree = 0;
    bool tree_due = false;
    bool ticked = false;
    while (!stopping) {
      std::int64_t now = steady_ms();
      int ev_fd = -1;
      bool open = false;
      {
        std::lock_guard lk(session_mu);
        if (!sess.is_open() && now >= next_open) {
          if (auto r = sess.open(); r) {
            otpd_state = "connected";
            sess.sample_now();
          } else {
            otpd_state = "unreachable: " + r.message();
          }
          next_open = now + opts.tick.count();
          tree_due = true;
        }
        if (sess.is_open() && now >= next_tick) {
          if (auto r = sess.tick(); !r) {
            otpd_state = "unreachable: " + r.message();
          }
          next_tick = now + opts.tick.count();
          tree_due = true;
          ticked = true;
        }
        if (tree_due && now - last_tree >= 100) {
          publish_tree();
          last_tree = now;
          tree_due = false;
        }
        ev_fd = sess.event_fd();
        open = sess.is_open();
      }
      // Prometheus scrapes every 15 s to 1 min: keep the text warm for 5 min.
      if (ticked && now - last_scrape.load() < 300000) {
        (void)render_and_cache();  // outside session_mu: actions go on meanwhile
      }
      ticked = false;
      std::int64_t wake =
          std::min(open ? next_tick : next_open, tree_due ? last_tree + 100 : INT64_MAX);
      pollfd fds[2] = {{wake_r.get(), POLLIN, 0}, {ev_fd, POLLIN, 0}};
      int timeout = static_cast<int>(std::clamp<std::int64_t>(wake - steady_ms(), 0, 60000));
      int r = ::poll(fds, ev_fd >= 0 ? 2 : 1, timeout);
      if (r <= 0 || (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
        continue;
      }
      std::lock_guard lk(session_mu);
      if (!sess.is_open()) {
        continue;
      }
      auto evs = sess.pump();
      if (!evs) {
        otpd_state = "unreachable: " + evs.message();
        tree_due = true;
        continue;
      }
      if (!evs->empty()) {
        sess.sample_now();  // a new process shows its memory at once
        tree_due = true;
      }
      for (const auto& ev : *evs) {
        json e = ev;
        e["wall_ms"] = wall_ms();
        bc.publish(sse("event", dump_safe(e)));
      }
    }
  }

  bool authorized(const httplib::Request& req, bool* via_query) {
    *via_query = false;
    if (same_secret(cookie_value(req, cookie_name), token)) {
      return true;
    }
    std::string auth = req.get_header_value("Authorization");
    if (auth.rfind("Bearer ", 0) == 0 && same_secret(auth.substr(7), token)) {
      return true;
    }
    if (req.has_param("token") && same_secret(req.get_param_value("token"), token)) {
      *via_query = true;
      return true;
    }
    return false;
  }

  // POSTs: the page's CSRF token in a header (a cross-site form cannot set
  // one), and an Origin, when the browser sends one, of this very server.
  bool csrf_ok(const httplib::Request& req) {
    if (!same_secret(req.get_header_value("X-CSRF-Token"), csrf)) {
      return false;
    }
    std::string origin = req.get_header_value("Origin");
    return origin.empty() || origin == "http://" + req.get_header_value("Host");
  }

  void routes() {
    http.set_default_headers({
        {"Cache-Control", "no-store"},
        {"X-Content-Type-Options", "nosniff"},
        {"X-Frame-Options", "DENY"},
        {"Referrer-Policy", "no-referrer"},
        {"Content-Security-Policy",
         "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
         "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"},
    });
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      bool via_query = false;
      if (!authorized(req, &via_query)) {
        res.status = 401;
        res.set_content("otpd-web: a token is required; `otpctl web` prints the URL with it\n",
                        "text/plain");
        return httplib::Server::HandlerResponse::Handled;
      }
      if (via_query) {
        res.set_header("Set-Cookie",
                       cookie_name + "=" + token + "; Path=/; HttpOnly; SameSite=Strict");
        if (req.method == "GET" && req.path == "/") {
          // The token leaves the address bar (and the history) at once.
          res.set_redirect("/", 303);
          return httplib::Server::HandlerResponse::Handled;
        }
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    for (const auto& a : assets()) {
      const asset* as = &a;
      http.Get(a.path, [as](const httplib::Request&, httplib::Response& res) {
        res.set_content(as->body.data(), as->body.size(), as->content_type);
      });
    }
    http.Get("/api/session", [this](const httplib::Request&, httplib::Response& res) {
      json_reply(res, {{"csrf", csrf}, {"runtime_dir", opts.runtime_dir}});
    });
    http.Get("/api/tree", [this](const httplib::Request&, httplib::Response& res) {
      json_reply(res, snapshot_json(*snap()));
    });
    http.Get("/api/events", [this](const httplib::Request&, httplib::Response& res) {
      json_reply(res, json(snap()->recent_events));
    });
    http.Get("/api/child", [this](const httplib::Request& req, httplib::Response& res) {
      std::string path = req.get_param_value("path");
      auto s = snap();
      for (const auto& r : s->rows) {
        if (r.path == path) {
          json j = child_json(r, true);
          j["log"] = {{"available", false},
                      {"why",
                       "otpd does not report a child's log file over the control "
                       "socket yet; the tail of its log will show here once it does"}};
          json_reply(res, j);
          return;
        }
      }
      json_reply(res, {{"error", "no such child"}}, 404);
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      std::int64_t now = steady_ms();
      last_scrape = now;
      std::shared_ptr<const std::string> text;
      {
        std::lock_guard lk(metrics_mu);
        // A late pump (a loaded machine) still beats rendering here.
        if (metrics_text && now - metrics_at <= 10 * opts.tick.count()) {
          text = metrics_text;
        }
      }
      if (!text) {
        text = render_and_cache();  // the first scrape in a while
      }
      res.set_content(*text, "text/plain; version=0.0.4; charset=utf-8");
    });
    http.Post("/api/action", [this](const httplib::Request& req, httplib::Response& res) {
      if (!csrf_ok(req)) {
        json_reply(res, {{"ok", false}, {"error", "missing or wrong CSRF token"}}, 403);
        return;
      }
      json body = proto::parse_json(req.body);
      if (!body.is_object() || !body.contains("verb") || !body["verb"].is_string() ||
          !body.contains("path") || !body["path"].is_string()) {
        json_reply(res, {{"ok", false}, {"error", "expected {\"verb\": ..., \"path\": ...}"}}, 400);
        return;
      }
      std::string verb = body["verb"];
      std::string path = body["path"];
      json request;
      using v = proto::child_request::verb;
      if (verb == "kill") {
        request = proto::kill_request{path, {}}.to_json();
      } else if (verb == "restart" || verb == "stop" || verb == "start") {
        v what = verb == "restart" ? v::restart : verb == "stop" ? v::stop : v::start;
        request = proto::child_request{what, path}.to_json();
      } else {
        json_reply(res, {{"ok", false}, {"error", "unknown verb"}}, 400);
        return;
      }
      core::Result<json> reply = core::errc::disconnected;
      {
        std::lock_guard lk(session_mu);
        reply = sess.command(request);
      }
      if (!reply) {
        json_reply(res, {{"ok", false}, {"error", "otpd: " + reply.message()}}, 502);
        return;
      }
      json_reply(res, *reply, proto::is_ok(*reply) ? 200 : 409);
    });
    http.Get("/api/stream", [this](const httplib::Request&, httplib::Response& res) {
      if (streams.fetch_add(1) >= opts.max_streams) {
        --streams;
        res.status = 503;
        res.set_content("otpd-web: too many open event streams\n", "text/plain");
        return;
      }
      struct stream_state {
        std::uint64_t seq = 0;
        bool first = true;
      };
      auto st = std::make_shared<stream_state>();
      st->seq = bc.last_seq();
      res.set_header("X-Accel-Buffering", "no");
      res.set_chunked_content_provider(
          "text/event-stream",
          [this, st](std::size_t /*offset*/, httplib::DataSink& sink) {
            auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
            if (bc.stopped() || stopping) {
              sink.done();
              return true;
            }
            if (st->first) {
              st->first = false;
              json j = snapshot_json(*snap());
              j["otpd"] = "connected";
              return write("retry: 2000\n\n") && write(sse("tree", dump_safe(j)));
            }
            bool lost = false;
            auto msgs = bc.wait_after(st->seq, 15s, &lost);
            if (bc.stopped()) {
              sink.done();
              return true;
            }
            if (lost) {
              st->seq = msgs.empty() ? bc.last_seq() : msgs.back().seq;
              return write(sse("tree", dump_safe(snapshot_json(*snap()))));
            }
            if (msgs.empty()) {
              return write(": keepalive\n\n");  // finds a closed peer
            }
            for (const auto& m : msgs) {
              if (!write(m.text)) {
                return false;
              }
              st->seq = m.seq;
            }
            return true;
          },
          [this](bool /*success*/) { --streams; });
    });
  }
};

server::server(options opts) : p_(std::make_unique<impl>(std::move(opts))) {}

server::~server() = default;

void server::stop() {
  p_->stopping = true;
  p_->bc.stop();
  char b = 1;
  (void)!::write(p_->wake_w.get(), &b, 1);
  p_->http.stop();
}

int server::run() {
  impl& p = *p_;
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) != 0) {
    std::fprintf(stderr, "otpd-web: unable to create a pipe: %s; exiting\n", std::strerror(errno));
    return 111;
  }
  p.wake_r.reset(pipefd[0]);
  p.wake_w.reset(pipefd[1]);
  auto token = load_or_create_token(p.opts.runtime_dir);
  if (!token) {
    std::fprintf(stderr, "otpd-web: %s; exiting\n", token.message().c_str());
    return 111;
  }
  p.token = *token;
  {
    // The CSRF token only has to be unguessable and stable while we run.
    unsigned char raw[16];
    if (::getentropy(raw, sizeof raw) != 0) {
      std::fprintf(stderr, "otpd-web: unable to get random bytes: %s; exiting\n",
                   std::strerror(errno));
      return 111;
    }
    static const char hex[] = "0123456789abcdef";
    p.csrf.clear();
    for (unsigned char b : raw) {
      p.csrf.push_back(hex[b >> 4]);
      p.csrf.push_back(hex[b & 15]);
    }
  }
  std::size_t threads = static_cast<std::size_t>(p.opts.max_streams + p.opts.spare_threads);
  // httplib owns the queue it gets from this factory.
  p.http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };  // NOLINT
  // Headers and body go out in separate writes: without TCP_NODELAY, Nagle
  // and the client's delayed ACK add 40 ms to every answer.
  p.http.set_tcp_nodelay(true);
  p.http.set_keep_alive_timeout(5);
  p.http.set_read_timeout(5, 0);
  p.http.set_write_timeout(5, 0);
  p.http.set_payload_max_length(64 * 1024);
  p.routes();
  int port = p.opts.port;
  if (port == 0) {
    port = p.http.bind_to_any_port(p.opts.bind);
    if (port < 0) {
      std::fprintf(stderr, "otpd-web: unable to bind %s: %s; exiting\n", p.opts.bind.c_str(),
                   std::strerror(errno));
      return 111;
    }
  } else if (!p.http.bind_to_port(p.opts.bind, port)) {
    std::fprintf(stderr, "otpd-web: unable to bind %s:%d: %s; exiting\n", p.opts.bind.c_str(), port,
                 std::strerror(errno));
    return 111;
  }
  p.cookie_name = fmt::format("otpd_web_{}", port);
  std::string host =
      p.opts.bind.find(':') != std::string::npos ? "[" + p.opts.bind + "]" : p.opts.bind;
  std::string url = fmt::format("http://{}:{}/", host, port);
  if (auto r = core::write_file_atomic(web_url_file(p.opts.runtime_dir), url + "\n", 0600); !r) {
    std::fprintf(stderr, "otpd-web: unable to write %s: %s; exiting\n",
                 web_url_file(p.opts.runtime_dir).c_str(), r.message().c_str());
    return 111;
  }
  std::thread pump([&p] { p.pump_loop(); });
  std::fprintf(stderr, "otpd-web: serving %s (token in %s)\n", url.c_str(),
               web_token_file(p.opts.runtime_dir).c_str());
  (void)core::notify_ready();
  bool ok = p.http.listen_after_bind();
  stop();
  pump.join();
  ::unlink(web_url_file(p.opts.runtime_dir).c_str());
  return ok || p.stopping ? 0 : 111;
}

}  // namespace otpd::observer::web
