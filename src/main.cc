// The `remora` binary: run | validate | version | health.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "remora/config/loader.h"
#include "remora/observe/metrics.h"
#include "remora/proxy/snapshot.h"
#include "remora/server/admin.h"
#include "remora/server/server.h"
#include "remora/version.h"

namespace {

constexpr const char* kUsage =
    "usage: remora run -c FILE        run the proxy\n"
    "       remora validate -c FILE   check a config; every error as file:line:col\n"
    "       remora health [--url URL] exit 0 iff URL (default http://127.0.0.1:9901/ready) answers 200\n"
    "       remora version\n";

int usage() {
  std::fputs(kUsage, stderr);
  return 2;
}

std::string option(const std::vector<std::string>& args, const char* s, const char* l) {
  for (size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == s || args[i] == l) return args[i + 1];
  return {};
}

int validate(const std::string& path) {
  auto loaded = remora::config::load_file(path);
  auto errors = loaded.errors;
  errors.insert(errors.end(), loaded.unsupported.begin(), loaded.unsupported.end());
  if (errors.empty()) {
    remora::observe::Metrics scratch;
    auto compiled = remora::proxy::compile_snapshot(loaded.config, scratch);
    for (auto& e : compiled.errors) e.file = path;
    errors = compiled.errors;
  }
  for (const auto& e : errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
  if (!errors.empty()) {
    std::fprintf(stderr, "%s: %zu error%s\n", path.c_str(), errors.size(),
                 errors.size() == 1 ? "" : "s");
    return 1;
  }
  std::printf("%s: ok\n", path.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return usage();
  const std::string& command = args[0];
  if (command == "version" || command == "--version") {
    std::printf("remora %s (%s)\n", remora::kVersion, remora::kRevision);
    return 0;
  }
  if (command == "health") {
    auto url = option(args, "-u", "--url");
    std::string error;
    if (remora::server::probe(url.empty() ? "http://127.0.0.1:9901/ready" : url, error)) return 0;
    std::fprintf(stderr, "unhealthy: %s\n", error.c_str());
    return 1;
  }
  auto config = option(args, "-c", "--config");
  if (config.empty()) return usage();
  if (command == "validate") return validate(config);
  if (command == "run") return remora::server::Server(config).run();
  return usage();
}
