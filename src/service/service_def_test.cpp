// Tests of mup-service.toml parsing: the documented example, defaults, and every error
// naming file, line and key.
#include "service/service_def.hpp"

#include <gtest/gtest.h>
#include <signal.h>

#include "service/errors.hpp"
#include "test_util.hpp"

namespace mup::service {
namespace {

ServiceDef parse_ok(const std::string& text) {
  auto d = parse_service_def(text, "mup-service.toml");
  EXPECT_TRUE(d) << (d ? "" : d.error().message());
  return d ? *d : ServiceDef{};
}

TEST(ServiceDefTest, ParsesTheDocumentedExample) {
  ServiceDef d = parse_ok(R"(
[service]
exec = ["bin/server", "--port", "{port}"]
listen = "127.0.0.1:8080"
protocol = "http"
instances = 2
env = { LOG_LEVEL = "info" }
workdir = "."
[service.ready]
http = "/healthz"
timeout_ms = 10000
interval_ms = 100
[service.stop]
signal = "TERM"
drain_ms = 10000
timeout_ms = 10000
[service.restart]
backoff_ms = 200
max_backoff_ms = 10000
[service.log]
max_bytes = 1048576
[service.limits]
memory_max = "512M"
cpu_max = "100%"
pids_max = 256
)");
  EXPECT_EQ(d.exec, (std::vector<std::string>{"bin/server", "--port", "{port}"}));
  EXPECT_EQ(d.listen, "127.0.0.1:8080");
  EXPECT_EQ(d.protocol, Protocol::http);
  EXPECT_EQ(d.instances, 2);
  EXPECT_EQ(d.env.at("LOG_LEVEL"), "info");
  EXPECT_EQ(d.ready.kind, ReadyCheck::Kind::http);
  EXPECT_EQ(d.ready.http_path, "/healthz");
  EXPECT_EQ(d.stop.signal, SIGTERM);
  EXPECT_EQ(d.restart.max_backoff_ms, 10000);
  EXPECT_EQ(d.log.max_bytes, 1048576);
  EXPECT_EQ(d.limits.memory_max, 512ULL << 20);
  EXPECT_EQ(d.limits.cpu_max, 100);
  EXPECT_EQ(d.limits.pids_max, 256);

  auto back = service_def_from_json(d.to_json());
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->to_json(), d.to_json());
}

TEST(ServiceDefTest, DefaultsAndPlaceholders) {
  ServiceDef d = parse_ok("[service]\nexec = [\"/bin/true\"]\nlisten = \"[::1]:80\"\n");
  EXPECT_EQ(d.instances, 1);
  EXPECT_EQ(d.ready.kind, ReadyCheck::Kind::tcp);
  EXPECT_EQ(d.stop.timeout_ms, 10000);
  EXPECT_FALSE(d.limits.any());
  EXPECT_EQ(substitute("p={port} v={version} i={instance} s={state_dir} {x}",
                       {"41000", "2.0.0", "1", "/st"}),
            "p=41000 v=2.0.0 i=1 s=/st {x}");
}

TEST(ServiceDefTest, EveryErrorNamesFileLineAndKey) {
  const std::string head = "[service]\nexec = [\"bin/x\"]\nlisten = \"127.0.0.1:80\"\n";
  struct Case {
    std::string text;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {head + "bogus = 1\n", "mup-service.toml:4: service.bogus: unknown key"},
      {head + "[service.ready]\nhtp = \"/\"\n",
       "mup-service.toml:5: service.ready.htp: unknown key"},
      {"[other]\n", "mup-service.toml:1: other: unknown key"},
      {head + "instances = \"2\"\n",
       "mup-service.toml:4: service.instances: expected an integer, got a string"},
      {head + "instances = 0\n", "service.instances: must be between 1 and 64"},
      {head + "instances = 65\n", "service.instances: must be between 1 and 64"},
      {"[service]\nlisten = \"127.0.0.1:80\"\n", "mup-service.toml:1: service.exec: missing"},
      {"[service]\nexec = [\"bin/x\"]\n", "service.listen: missing"},
      {"[service]\nexec = [\"../x\"]\nlisten = \"127.0.0.1:80\"\n",
       "mup-service.toml:2: service.exec: relative program path \"../x\" must stay in the tree"},
      {"[service]\nexec = [\"bin/../../x\"]\nlisten = \"127.0.0.1:80\"\n", "must stay in the tree"},
      {"[service]\nexec = [1]\nlisten = \"127.0.0.1:80\"\n",
       "service.exec: expected an array of strings"},
      {"[service]\nexec = []\nlisten = \"127.0.0.1:80\"\n", "service.exec: must not be empty"},
      {"[service]\nexec = [\"x\"]\nlisten = \"8080\"\n",
       "mup-service.toml:3: service.listen: expected host:port"},
      {"[service]\nexec = [\"x\"]\nlisten = \"h:99999\"\n",
       "the port must be a number from 1 to 65535"},
      {"[service]\nexec = [\"x\"]\nlisten = \":80\"\n", "the host is empty"},
      {head + "[service.ready]\nhttp = \"/h\"\ntcp = true\n",
       "mup-service.toml:4: service.ready: give only one of http, tcp and exec"},
      {head + "[service.ready]\nhttp = \"h\"\n", "service.ready.http: expected a path"},
      {head + "protocol = \"udp\"\n", "service.protocol: expected \"http\" or \"tcp\""},
      {head + "[service.stop]\nsignal = \"STOP\"\n", "service.stop.signal: unknown signal"},
      {head + "[service.limits]\nmemory_max = \"12X\"\n",
       "service.limits.memory_max: expected a size"},
      {head + "[service.limits]\ncpu_max = 50\n", "service.limits.cpu_max: expected a percentage"},
      {head + "env = { PORT = \"1\" }\n", "service.env.PORT: is set by mup"},
      {head + "env = { A = 1 }\n", "service.env.A: expected a string"},
      {head + "workdir = \"/abs\"\n", "service.workdir: must be a path in the tree"},
      {"[service]\nexec = [\"x\", \"{prot}\"]\nlisten = \"127.0.0.1:80\"\n",
       "unknown placeholder {prot}"},
      {head + "[service.restart]\nbackoff_ms = 500\nmax_backoff_ms = 100\n",
       "must be >= backoff_ms"},
      {head + "[service.log]\nmax_bytes = 10\n", "service.log.max_bytes: must be between 1024"},
      {"[service\n", "mup-service.toml:1:"},
      {head + "[[service.check]]\ncount = 3\n",
       "mup-service.toml:4: service.check[0]: give one of http, tcp and exec"},
      {head + "[[service.check]]\nhttp = \"/a\"\n[[service.check]]\nhttp = \"/b\"\ncount = 0\n",
       "mup-service.toml:8: service.check[1].count: must be between 1 and 1000"},
      {head + "[[service.check]]\nhttp = \"/a\"\ninterval_ms = 5\n",
       "service.check[0].interval_ms: unknown key"},
      {head + "[[service.check]]\nhttp = \"/a\"\ntimeout_ms = 600000\n",
       "service.check[0].timeout_ms: must be between 1 and 60000"},
      {head + "[service.check]\nhttp = \"/a\"\n",
       "service.check: expected an array of tables ([[service.check]])"},
  };
  for (const auto& c : cases) {
    auto d = parse_service_def(c.text, "mup-service.toml");
    ASSERT_FALSE(d) << c.text;
    EXPECT_TRUE(d.error().is(Code::bad_definition)) << d.error().code_string();
    EXPECT_NE(d.error().message().find(c.expect), std::string::npos)
        << "text:\n"
        << c.text << "message: " << d.error().message();
  }
}

TEST(ServiceDefTest, SyntheticChecks) {
  ServiceDef d = parse_ok(R"(
[service]
exec = ["bin/x"]
listen = "127.0.0.1:80"
[[service.check]]
http = "/api/items?limit=1"
count = 20
max_failures = 1
[[service.check]]
exec = ["bin/smoke", "--port", "{port}"]
timeout_ms = 5000
)");
  ASSERT_EQ(d.checks.size(), 2u);
  EXPECT_EQ(d.checks[0].probe.kind, ReadyCheck::Kind::http);
  EXPECT_EQ(d.checks[0].name(), "GET /api/items?limit=1");
  EXPECT_EQ(d.checks[0].count, 20);
  EXPECT_EQ(d.checks[0].max_failures, 1);
  EXPECT_EQ(d.checks[0].probe.timeout_ms, 2000) << "per attempt, by default";
  EXPECT_EQ(d.checks[1].name(), "exec bin/smoke");
  EXPECT_EQ(d.checks[1].count, 10);
  EXPECT_EQ(d.checks[1].probe.timeout_ms, 5000);
  EXPECT_EQ(d.ready.kind, ReadyCheck::Kind::tcp) << "checks leave readiness alone";
  auto back = service_def_from_json(d.to_json());
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->to_json(), d.to_json());
  EXPECT_EQ(back->checks.size(), 2u);
}

TEST(ServiceDefTest, LoadsFromFile) {
  test::ScratchDir dir;
  test::write_file(dir / "mup-service.toml",
                   std::string("[service]\nexec = [\"x\"]\nlisten = 1\n"));
  auto d = load_service_def(dir / "mup-service.toml");
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message().find((dir / "mup-service.toml").string() + ":3: service.listen"),
            std::string::npos)
      << d.error().message();
  EXPECT_FALSE(load_service_def(dir / "missing.toml"));
}

}  // namespace
}  // namespace mup::service
