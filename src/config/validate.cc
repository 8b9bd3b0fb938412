// Semantic rules for the parts of the config that are not routes or
// clusters: listeners, admin, control plane, observability, and the
// positivity of every duration.
#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <unordered_set>

#include <google/protobuf/descriptor.h>

#include "checker.h"
#include "remora/config/address.h"
#include "remora/config/duration.h"
#include "remora/config/loader.h"

namespace remora::config {
namespace detail {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

// The admin endpoint listens even when the file does not mention it.
constexpr const char* kDefaultAdminAddress = "127.0.0.1:9901";

// Who holds an address: "listeners[0]", or "admin".
struct Bound {
  HostPort address;
  std::string owner;
  bool is_default = false;
};

bool is_wildcard(const HostPort& a) { return a.host == "0.0.0.0" || a.host == "::"; }

// Two sockets cannot bind the same port if one of them takes every address
// of the family; "::" also takes IPv4 on a dual-stack host.
bool overlaps(const HostPort& a, const HostPort& b) {
  if (a.port != b.port) return false;
  if (a.host == b.host) return true;
  if (a.host == "::" || b.host == "::") return true;
  return a.kind == b.kind && (is_wildcard(a) || is_wildcard(b));
}

void check_bind(const HostPort& address, const std::string& owner, std::vector<Bound>& bound,
                Checker& check) {
  std::string path = field_path(owner, "address");
  for (const auto& other : bound) {
    if (!overlaps(address, other.address)) continue;
    std::string note = other.is_default ? " (the default " + other.address.to_string() +
                                              "; set admin.address to move it)"
                                        : " (" + other.address.to_string() + ")";
    if (address.host == other.address.host) {
      check.error(path, "address " + address.to_string() + " is already used by " + other.owner +
                            (other.is_default ? note : ""));
    } else {
      check.error(path, "address " + address.to_string() + " conflicts with " + other.owner + note);
    }
    return;
  }
  bound.push_back({address, owner, false});
}

void check_listeners(const v1::Config& config, Checker& check, std::vector<Bound>& bound) {
  if (config.listeners().empty()) {
    check.error("listeners", "at least one listener is required");
    return;
  }
  check_unique_names(config.listeners(), "listeners", "listener", check);

  std::vector<std::string> tables;
  for (const auto& table : config.route_tables()) tables.push_back(table.name());

  for (int i = 0; i < config.listeners_size(); ++i) {
    const v1::Listener& listener = config.listeners(i);
    std::string path = index_path("listeners", static_cast<std::size_t>(i));
    std::string address_path = field_path(path, "address");
    if (listener.address().empty()) {
      check.error(address_path, "a listener needs an address (e.g. 0.0.0.0:8080)");
    } else if (HostPortResult parsed = parse_ip_port(listener.address()); !parsed.ok()) {
      check.error(address_path,
                  "invalid address " + quoted(listener.address()) + ": " + parsed.error);
    } else {
      check_bind(parsed.value, path, bound, check);
    }
    if (!v1::Listener::Protocol_IsValid(listener.protocol())) {
      check.error(field_path(path, "protocol"),
                  "unknown protocol value " + std::to_string(listener.protocol()));
    }
    std::string table_path = field_path(path, "route_table");
    if (listener.route_table().empty()) {
      check.error(table_path, "a listener needs a route_table");
    } else if (std::find(tables.begin(), tables.end(), listener.route_table()) == tables.end()) {
      check.error(table_path, "unknown route table " + quoted(listener.route_table()) +
                                  did_you_mean(listener.route_table(), tables));
    }
  }
}

void check_admin_and_control_plane(const v1::Config& config, Checker& check,
                                   std::vector<Bound>& bound) {
  if (config.admin().address().empty()) {
    bound.push_back({parse_ip_port(kDefaultAdminAddress).value, "admin", true});
  } else if (HostPortResult parsed = parse_ip_port(config.admin().address()); !parsed.ok()) {
    check.error("admin.address",
                "invalid address " + quoted(config.admin().address()) + ": " + parsed.error);
  } else {
    bound.push_back({parsed.value, "admin", false});
  }

  const std::string& control = config.control_plane().address();
  if (!control.empty()) {
    if (HostPortResult parsed = parse_host_port(control); !parsed.ok()) {
      check.error("control_plane.address",
                  "invalid address " + quoted(control) + ": " + parsed.error);
    }
    // The control plane addresses snapshots to nodes by id.
    if (config.node().id().empty()) {
      check.error("node.id", "required when control_plane.address is set");
    }
  }
}

void check_observability(const v1::Observability& observability, Checker& check) {
  static const std::vector<std::string> kLevels = {"trace", "debug", "info", "warn", "error"};
  const std::string& level = observability.log_level();
  if (!level.empty() && std::find(kLevels.begin(), kLevels.end(), level) == kLevels.end()) {
    check.error("observability.log_level", "unknown log level " + quoted(level) +
                                               did_you_mean(level, kLevels) + ": expected one of " +
                                               join(kLevels));
  }
  if (!v1::AccessLog::Format_IsValid(observability.access_log().format())) {
    check.error("observability.access_log.format",
                "unknown format value " + std::to_string(observability.access_log().format()));
  }
  const v1::Tracing& tracing = observability.tracing();
  if (std::string why = out_of_range(tracing.sample_ratio(), 0, 1); !why.empty()) {
    check.error("observability.tracing.sample_ratio", why);
  }
  const std::string& endpoint = tracing.otlp_endpoint();
  if (!endpoint.empty() && !endpoint.starts_with("http://") && !endpoint.starts_with("https://")) {
    check.error("observability.tracing.otlp_endpoint",
                "expected an http:// or https:// URL, got " + quoted(endpoint));
  }
}

bool is_duration(const Descriptor* type) {
  return type->well_known_type() == Descriptor::WELLKNOWNTYPE_DURATION;
}

// The fields of each message type that can hold a Duration at any depth,
// in field-number order (as ListFields gives them). Most of a large config
// (route matches, header maps, endpoints) holds none, and walking all of it
// through reflection would be most of the cost of check_durations.
class DurationFields {
 public:
  const std::vector<const FieldDescriptor*>& of(const Descriptor* type) {
    auto [it, inserted] = known_.try_emplace(type);
    if (!inserted) return it->second;
    std::vector<const FieldDescriptor*>& fields = it->second;
    for (int i = 0; i < type->field_count(); ++i) {
      const FieldDescriptor* field = type->field(i);
      std::unordered_set<const Descriptor*> visited;
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE &&
          reaches_duration(field->message_type(), visited)) {
        fields.push_back(field);
      }
    }
    std::sort(fields.begin(), fields.end(),
              [](const FieldDescriptor* a, const FieldDescriptor* b) {
                return a->number() < b->number();
              });
    return fields;
  }

 private:
  static bool reaches_duration(const Descriptor* type,
                               std::unordered_set<const Descriptor*>& visited) {
    if (is_duration(type)) return true;
    if (!visited.insert(type).second) return false;  // a recursive type, already being searched
    for (int i = 0; i < type->field_count(); ++i) {
      const FieldDescriptor* field = type->field(i);
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE &&
          reaches_duration(field->message_type(), visited)) {
        return true;
      }
    }
    return false;
  }

  // Node-based, so references handed out stay valid as it grows.
  std::unordered_map<const Descriptor*, std::vector<const FieldDescriptor*>> known_;
};

// Every duration in the schema is a timeout, interval or delay: zero or
// negative has no meaning, and "unset" is how a user asks for the default.
void check_durations(const Message& message, const std::string& path,
                     DurationFields& duration_fields, Checker& check) {
  const auto* reflection = message.GetReflection();
  for (const FieldDescriptor* field : duration_fields.of(message.GetDescriptor())) {
    bool set = field->is_repeated() ? reflection->FieldSize(message, field) > 0
                                    : reflection->HasField(message, field);
    if (!set) continue;
    std::string child = field_path(path, field->name());
    if (field->is_map()) {
      for (int i = 0; i < reflection->FieldSize(message, field); ++i) {
        const Message& entry = reflection->GetRepeatedMessage(message, field, i);
        const auto* key = entry.GetDescriptor()->map_key();
        if (key->cpp_type() != FieldDescriptor::CPPTYPE_STRING) continue;
        check_durations(entry, key_path(child, entry.GetReflection()->GetString(entry, key)),
                        duration_fields, check);
      }
    } else if (field->is_repeated()) {
      for (int i = 0; i < reflection->FieldSize(message, field); ++i) {
        check_durations(reflection->GetRepeatedMessage(message, field, i),
                        index_path(child, static_cast<std::size_t>(i)), duration_fields,
                        check);
      }
    } else if (is_duration(field->message_type())) {
      const auto& d =
          static_cast<const google::protobuf::Duration&>(reflection->GetMessage(message, field));
      bool well_formed = d.seconds() >= -315'576'000'000 && d.seconds() <= 315'576'000'000 &&
                         d.nanos() > -1'000'000'000 && d.nanos() < 1'000'000'000 &&
                         !(d.seconds() > 0 && d.nanos() < 0) && !(d.seconds() < 0 && d.nanos() > 0);
      if (!well_formed) {
        check.error(child, "invalid duration (seconds " + std::to_string(d.seconds()) + ", nanos " +
                               std::to_string(d.nanos()) + ")");
      } else if (d.seconds() < 0 || (d.seconds() == 0 && d.nanos() <= 0)) {
        check.error(child, "must be greater than 0, got " + format_duration(d));
      }
    } else {
      check_durations(reflection->GetMessage(message, field), child, duration_fields, check);
    }
  }
}

}  // namespace

void Checker::error(const std::string& path, std::string message) {
  Position at = positions_ != nullptr ? positions_->find(path) : Position{};
  found_.push_back(Diagnostic{file_, at.line, at.column, path, std::move(message)});
}

bool is_header_name(std::string_view name) {
  // RFC 9110 token characters.
  static constexpr std::string_view kSymbols = "!#$%&'*+-.^_`|~";
  if (name.empty()) return false;
  for (char c : name) {
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && kSymbols.find(c) == std::string_view::npos) return false;
  }
  return true;
}

bool is_header_value(std::string_view value) {
  // CR, LF and NUL would let a config line inject headers or split a message.
  return value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

std::string out_of_range(double value, double min, double max) {
  if (value >= min && value <= max) return "";
  return "must be between " + format_number(min) + " and " + format_number(max) + ", got " +
         format_number(value);
}

std::vector<Diagnostic> validate_config(const v1::Config& config, const SourceMap* positions,
                                        const std::string& file) {
  Checker check(positions, file);
  std::vector<Bound> bound;
  check_admin_and_control_plane(config, check, bound);
  check_listeners(config, check, bound);
  check_route_tables(config, check);
  check_clusters(config, check);
  check_observability(config.observability(), check);
  DurationFields duration_fields;
  check_durations(config, "", duration_fields, check);
  return check.take();
}

}  // namespace detail

std::vector<Diagnostic> validate(const v1::Config& config) {
  return detail::validate_config(config, nullptr, "");
}

}  // namespace remora::config
