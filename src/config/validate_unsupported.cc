// Keys the schema has but this release does not enforce yet. A proxy that
// accepted `tls:` and served plaintext, or `retry:` and never retried, would
// mislead its operator; refusing says so at the line where it is written.
// Each line here goes away with the release that implements it.
#include "checker.h"

namespace remora::config::detail {
namespace {

void refuse(Checker& check, const std::string& path, std::string_view what) {
  check.error(path, std::string(what) + " is not supported yet by this release of remora" +
                        " (it would be ignored, so it is refused)");
}

}  // namespace

void check_unsupported(const v1::Config& config, Checker& check) {
  for (int i = 0; i < config.listeners_size(); ++i) {
    const auto& listener = config.listeners(i);
    auto path = index_path("listeners", static_cast<std::size_t>(i));
    if (listener.has_tls()) refuse(check, field_path(path, "tls"), "tls (mTLS)");
  }
  for (int i = 0; i < config.clusters_size(); ++i) {
    const auto& cluster = config.clusters(i);
    auto path = index_path("clusters", static_cast<std::size_t>(i));
    if (cluster.has_tls()) refuse(check, field_path(path, "tls"), "tls (mTLS)");
  }
  if (config.observability().has_tracing())
    refuse(check, "observability.tracing", "tracing");
  if (config.has_control_plane()) refuse(check, "control_plane", "control_plane");
}

std::vector<Diagnostic> unsupported_features(const v1::Config& config, const SourceMap* positions,
                                             const std::string& file) {
  Checker check(positions, file);
  check_unsupported(config, check);
  return check.take();
}

}  // namespace remora::config::detail

namespace remora::config {

std::vector<Diagnostic> unsupported(const v1::Config& config) {
  return detail::unsupported_features(config, nullptr, "");
}

}  // namespace remora::config
