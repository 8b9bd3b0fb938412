// The config loader and validator, checked the way a user meets them: the
// exact text of each error, with its file:line:column and field path.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "remora/config/address.h"
#include "remora/config/duration.h"
#include "remora/config/loader.h"

using namespace remora::config;

namespace {

// YAML documents in this file start on the line after R"( for readability;
// drop that first newline so line numbers match what the eye counts.
std::string doc(std::string_view text) {
  if (!text.empty() && text.front() == '\n') text.remove_prefix(1);
  return std::string(text);
}

// Every diagnostic as a user sees it, one per line: one string comparison
// shows the whole difference when a test fails.
std::string lines(const std::vector<Diagnostic>& errors) {
  std::string out;
  for (const auto& e : errors) out += e.to_string() + "\n";
  return out;
}

std::string errors_of(std::string_view yaml) {
  return lines(load_yaml(doc(yaml), "remora.yaml").errors);
}

// The smallest valid config; semantic tests start from it and break one thing.
const char* const kMinimal = R"(
listeners:
  - name: main
    address: 127.0.0.1:8080
    route_table: main
route_tables:
  - name: main
    routes:
      - cluster: app
clusters:
  - name: app
    endpoints: [ 127.0.0.1:9000 ]
)";

v1::Config minimal() {
  LoadedConfig loaded = load_yaml(doc(kMinimal), "minimal.yaml");
  REQUIRE(lines(loaded.errors) == "");
  return *loaded.config;
}

v1::Route& first_route(v1::Config& config) {
  return *config.mutable_route_tables(0)->mutable_routes(0);
}

google::protobuf::Duration seconds(std::int64_t s, std::int32_t nanos = 0) {
  google::protobuf::Duration d;
  d.set_seconds(s);
  d.set_nanos(nanos);
  return d;
}

}  // namespace

// ---------------------------------------------------------------------------
// Diagnostic text

TEST_CASE("a diagnostic prints file:line:col: path: message and leaves out what is unknown") {
  CHECK(Diagnostic{"remora.yaml", 14, 9, "route_tables[0].routes[0]", "unknown field \"retires\""}
            .to_string() ==
        "remora.yaml:14:9: route_tables[0].routes[0]: unknown field \"retires\"");
  CHECK(Diagnostic{"", 0, 0, "clusters[0].name", "a cluster needs a name"}.to_string() ==
        "clusters[0].name: a cluster needs a name");
  CHECK(Diagnostic{"remora.yaml", 3, 0, "", "YAML syntax error: x"}.to_string() ==
        "remora.yaml:3: YAML syntax error: x");
  CHECK(Diagnostic{"remora.yaml", 0, 0, "", "cannot read file"}.to_string() ==
        "remora.yaml: cannot read file");
  CHECK(Diagnostic{"", 2, 5, "workers", "m"}.to_string() == "2:5: workers: m");
}

// ---------------------------------------------------------------------------
// Unknown keys

TEST_CASE("an unknown key names its place and suggests the field meant") {
  CHECK(errors_of(R"(
node: { id: orders-1 }
listeners:
  - name: outbound
    address: 127.0.0.1:15001
    route_table: outbound
clusters:
  - name: items
    endpoints: [ "dns:items.svc:8080" ]
route_tables:
  - name: outbound
    routes:
      - match: { prefix: / }
        cluster: items
        retires: { attempts: 3 }
)") == "remora.yaml:14:9: route_tables[0].routes[0]: unknown field \"retires\" "
       "(did you mean \"retry\"?)\n");
}

TEST_CASE("unknown keys at the top level with case and dash slips or far from any field") {
  CHECK(errors_of(R"(
listners: []
Workers: 2
route-tables: []
listeners:
  - name: main
    address: 127.0.0.1:8080
    route_table: main
    banana: 1
route_tables: [ { name: main, routes: [ { cluster: app } ] } ]
clusters: [ { name: app, endpoints: [ 127.0.0.1:9000 ] } ]
)") == "remora.yaml:1:1: unknown field \"listners\" (did you mean \"listeners\"?)\n"
       "remora.yaml:2:1: unknown field \"Workers\" (did you mean \"workers\"?)\n"
       "remora.yaml:3:1: unknown field \"route-tables\" (did you mean \"route_tables\"?)\n"
       "remora.yaml:8:5: listeners[0]: unknown field \"banana\" (expected one of name, address, "
       "protocol, route_table, tls, limits)\n");
}

TEST_CASE("a key written twice is an error and not a silent override") {
  CHECK(errors_of(R"(
listeners:
  - name: main
    address: 127.0.0.1:8080
    route_table: main
    name: other
route_tables:
  - name: main
    routes:
      - cluster: app
        request_headers: { add: { x-a: "1", x-a: "2" } }
clusters: [ { name: app, endpoints: [ 127.0.0.1:9000 ] } ]
)") == "remora.yaml:5:5: listeners[0]: duplicate field \"name\" (first set on line 2)\n"
       "remora.yaml:10:45: route_tables[0].routes[0].request_headers.add: duplicate key \"x-a\" "
       "(first set on line 10)\n");
}

// ---------------------------------------------------------------------------
// Types

TEST_CASE("scalars are checked against the field's type") {
  CHECK(errors_of(R"(
workers: four
max_connections: -1
drain_timeout: [ 1s ]
node: { id: [ a ] }
listeners:
  - name: main
    address: 127.0.0.1:8080
    route_table: main
    limits: { max_request_headers: 4294967296, max_connections: "100" }
route_tables:
  - name: main
    routes:
      - cluster: app
        retry: { retry_non_idempotent: yes, attempts: 2.5 }
        fault: { delay: { duration: 1s, percent: ten } }
clusters:
  - name: app
    endpoints: 127.0.0.1:9000
    circuit_breaker: 5
)") == "remora.yaml:1:10: workers: expected a non-negative integer, got \"four\"\n"
       "remora.yaml:2:18: max_connections: expected a non-negative integer, got \"-1\"\n"
       "remora.yaml:3:16: drain_timeout: expected a duration such as 250ms or 2s, got a list\n"
       "remora.yaml:4:13: node.id: expected a string, got a list (quote a value that starts "
       "with [ or {)\n"
       "remora.yaml:9:36: listeners[0].limits.max_request_headers: 4294967296 is out of range "
       "(0..4294967295)\n"
       "remora.yaml:9:65: listeners[0].limits.max_connections: expected a non-negative integer, "
       "got the quoted string \"100\" (remove the quotes)\n"
       "remora.yaml:14:40: route_tables[0].routes[0].retry.retry_non_idempotent: expected true "
       "or false, got \"yes\"\n"
       "remora.yaml:14:55: route_tables[0].routes[0].retry.attempts: expected a non-negative "
       "integer, got \"2.5\"\n"
       "remora.yaml:15:50: route_tables[0].routes[0].fault.delay.percent: expected a number, got "
       "\"ten\"\n"
       "remora.yaml:18:16: clusters[0].endpoints: expected a list, got \"127.0.0.1:9000\" (write "
       "[ 127.0.0.1:9000 ] for a single item)\n"
       "remora.yaml:19:22: clusters[0].circuit_breaker: expected a map, got \"5\"\n");
}

TEST_CASE("well-typed scalars land in the proto") {
  LoadedConfig loaded = load_yaml(doc(R"(
workers: 4
listeners:
  - name: main
    address: 127.0.0.1:8080
    route_table: main
route_tables:
  - name: main
    routes:
      - cluster: app
        retry: { attempts: 2, retry_non_idempotent: True, retriable_status_codes: [ 503 ],
                 on: [ retriable-status-codes ] }
        fault: { delay: { duration: 1s, percent: 12.5 } }
        rate_limit: { rate: 1e3, burst: 10 }
clusters:
  - name: app
    endpoints: [ 127.0.0.1:9000 ]
observability: { tracing: { sample_ratio: .25 } }
)"),
                                  "remora.yaml");
  REQUIRE(lines(loaded.errors) == "");
  const v1::Config& c = *loaded.config;
  CHECK(c.workers() == 4);
  const v1::Route& route = c.route_tables(0).routes(0);
  CHECK(route.retry().attempts() == 2);
  CHECK(route.retry().retry_non_idempotent());
  CHECK(route.retry().retriable_status_codes(0) == 503);
  CHECK(route.fault().delay().percent() == 12.5);
  CHECK(route.rate_limit().rate() == 1000.0);
  CHECK(c.observability().tracing().sample_ratio() == 0.25);
}

TEST_CASE("enums are written in lower case and anything else lists the allowed values") {
  CHECK(
      errors_of(R"(
listeners:
  - name: main
    address: 127.0.0.1:8080
    route_table: main
    protocol: http3
route_tables: [ { name: main, routes: [ { cluster: app } ] } ]
clusters:
  - name: app
    endpoints: [ 127.0.0.1:9000 ]
    lb: roundrobin
    protocol: 1
observability: { access_log: { path: stdout, format: yaml } }
)") ==
      "remora.yaml:5:15: listeners[0].protocol: invalid value \"http3\" (did you mean \"http1\"?): "
      "expected one of auto, http1, http2\n"
      "remora.yaml:10:9: clusters[0].lb: invalid value \"roundrobin\" (did you mean "
      "\"round_robin\"?): expected one of round_robin, least_request, random, ring_hash, maglev\n"
      "remora.yaml:11:15: clusters[0].protocol: invalid value \"1\": expected one of http1, http2\n"
      "remora.yaml:12:54: observability.access_log.format: invalid value \"yaml\": expected one "
      "of text, json\n");
}

TEST_CASE("enum names match case-insensitively") {
  LoadedConfig loaded = load_yaml(doc(R"(
listeners: [ { name: main, address: 127.0.0.1:8080, route_table: main, protocol: HTTP2 } ]
route_tables: [ { name: main, routes: [ { cluster: app } ] } ]
clusters: [ { name: app, endpoints: [ 127.0.0.1:9000 ], lb: Least_Request, protocol: http2 } ]
observability: { access_log: { path: stdout, format: json } }
)"),
                                  "remora.yaml");
  REQUIRE(lines(loaded.errors) == "");
  CHECK(loaded.config->listeners(0).protocol() == v1::Listener::HTTP2);
  CHECK(loaded.config->clusters(0).lb() == v1::Cluster::LEAST_REQUEST);
  CHECK(loaded.config->clusters(0).protocol() == v1::Cluster::HTTP2);
  CHECK(loaded.config->observability().access_log().format() == v1::AccessLog::JSON);
}

TEST_CASE("a null value leaves the field unset") {
  LoadedConfig loaded = load_yaml(doc(R"(
node:
workers: ~
listeners:
  - name: main
    address: 127.0.0.1:8080
    route_table: main
    tls: null
route_tables: [ { name: main, routes: [ { cluster: app, retry: } ] } ]
clusters: [ { name: app, endpoints: [ 127.0.0.1:9000 ] } ]
)"),
                                  "remora.yaml");
  REQUIRE(lines(loaded.errors) == "");
  CHECK_FALSE(loaded.config->has_node());
  CHECK_FALSE(loaded.config->listeners(0).has_tls());
  CHECK_FALSE(loaded.config->route_tables(0).routes(0).has_retry());
}

TEST_CASE("null list items are reported where the list is") {
  CHECK(errors_of(R"(
listeners: [ { name: main, address: 127.0.0.1:8080, route_table: main } ]
route_tables: [ { name: main, routes: [ { cluster: app } ] } ]
clusters: [ { name: app, endpoints: [ 127.0.0.1:9000, ~ ] } ]
)") == "remora.yaml:3:37: clusters[0].endpoints[1]: empty list item\n");
}

// ---------------------------------------------------------------------------
// Durations

TEST_CASE("durations parse from a number and a unit") {
  struct Case {
    const char* text;
    std::int64_t seconds;
    std::int32_t nanos;
  };
  for (Case c : {Case{"250ms", 0, 250'000'000}, Case{"2s", 2, 0}, Case{"1m", 60, 0},
                 Case{"1h", 3600, 0}, Case{"1.5s", 1, 500'000'000}, Case{"100us", 0, 100'000},
                 Case{"100\xC2\xB5s", 0, 100'000}, Case{"10ns", 0, 10}, Case{"1h30m", 5400, 0},
                 Case{".5s", 0, 500'000'000}, Case{"0.25m", 15, 0}, Case{"0s", 0, 0}}) {
    CAPTURE(c.text);
    DurationResult r = parse_duration(c.text);
    REQUIRE(r.error == "");
    CHECK(r.value.seconds() == c.seconds);
    CHECK(r.value.nanos() == c.nanos);
  }
}

TEST_CASE("a duration without a unit or with a wrong one is refused with a hint") {
  CHECK(
      parse_duration("5").error ==
      "invalid duration \"5\": missing unit (ns, us, ms, s, m, h); write e.g. 250ms, 2s, 1m or 1h");
  CHECK(
      parse_duration("0").error ==
      "invalid duration \"0\": missing unit (ns, us, ms, s, m, h); write e.g. 250ms, 2s, 1m or 1h");
  CHECK(parse_duration("5x").error ==
        "invalid duration \"5x\": unknown unit \"x\" (use ns, us, ms, s, m or h)");
  CHECK(parse_duration("2 s").error ==
        "invalid duration \"2 s\": unknown unit \" s\" (use ns, us, ms, s, m or h)");
  CHECK(parse_duration("1d").error ==
        "invalid duration \"1d\": unknown unit \"d\" (use ns, us, ms, s, m or h)");
  CHECK(parse_duration("-1s").error == "invalid duration \"-1s\": durations cannot be negative");
  CHECK(parse_duration("fast").error ==
        "invalid duration \"fast\": expected a number followed by a unit; write e.g. 250ms, 2s, "
        "1m or 1h");
  CHECK(parse_duration("").error == "invalid duration \"\": empty; write e.g. 250ms, 2s, 1m or 1h");
  CHECK(parse_duration("1s5").error == "invalid duration \"1s5\": missing unit after 5");
  CHECK(parse_duration("999999999999999h").error ==
        "invalid duration \"999999999999999h\": too long (the maximum is 10000 years)");
}

TEST_CASE("durations print in the largest exact unit") {
  CHECK(format_duration(seconds(2)) == "2s");
  CHECK(format_duration(seconds(0, 250'000'000)) == "250ms");
  CHECK(format_duration(seconds(60)) == "1m");
  CHECK(format_duration(seconds(5400)) == "90m");
  CHECK(format_duration(seconds(7200)) == "2h");
  CHECK(format_duration(seconds(1, 500'000'000)) == "1500ms");
  CHECK(format_duration(seconds(0, 100'000)) == "100us");
  CHECK(format_duration(seconds(0, 7)) == "7ns");
  CHECK(format_duration(seconds(0)) == "0s");
  CHECK(format_duration(seconds(-3)) == "-3s");
}

TEST_CASE("durations in YAML: bad text where it was written and zero by the validator") {
  CHECK(errors_of(R"(
drain_timeout: 5
listeners:
  - name: main
    address: 127.0.0.1:8080
    route_table: main
    limits: { header_read_timeout: 10 s, idle_timeout: { seconds: 1 } }
route_tables:
  - name: main
    routes:
      - cluster: app
        timeout: 0s
        retry: { per_try_timeout: 0, backoff: { base: 25ms, max: "1.5s" } }
clusters: [ { name: app, endpoints: [ 127.0.0.1:9000 ], connect_timeout: 2h } ]
)") == "remora.yaml:1:16: drain_timeout: invalid duration \"5\": missing unit (ns, us, ms, s, m, "
       "h); write e.g. 250ms, 2s, 1m or 1h\n"
       "remora.yaml:6:36: listeners[0].limits.header_read_timeout: invalid duration \"10 s\": "
       "unknown unit \" s\" (use ns, us, ms, s, m or h)\n"
       "remora.yaml:6:56: listeners[0].limits.idle_timeout: expected a duration such as 250ms "
       "or 2s, got a map\n"
       "remora.yaml:11:18: route_tables[0].routes[0].timeout: must be greater than 0, got 0s\n"
       "remora.yaml:12:35: route_tables[0].routes[0].retry.per_try_timeout: invalid duration "
       "\"0\": missing unit (ns, us, ms, s, m, h); write e.g. 250ms, 2s, 1m or 1h\n");
}

// ---------------------------------------------------------------------------
// YAML syntax and document shape

TEST_CASE("YAML syntax errors are reported with their position") {
  CHECK(errors_of(R"(
listeners:
  - name: main
    address: 127.0.0.1:8080
   route_table: main
)") == "remora.yaml:4:4: YAML syntax error: end of sequence not found\n");
  CHECK(errors_of("clusters: [ { name: app, endpoints: [ 127.0.0.1:9000 ]\nworkers: 1\n") ==
        "remora.yaml:2:1: YAML syntax error: end of map flow not found\n");
  CHECK(errors_of("listeners:\n\t- name: main\n") ==
        "remora.yaml:2:2: YAML syntax error: illegal block entry (YAML does not allow tabs for "
        "indentation)\n");
}

TEST_CASE("a stray comma is a syntax error and not an endless stream of empty documents") {
  // yaml-cpp 0.7 alone would loop forever here (its issue #1040).
  CHECK(errors_of(",\n") == "remora.yaml:1:1: YAML syntax error: unexpected \",\"\n");
  CHECK(errors_of(", listeners: []\n") == "remora.yaml:1:1: YAML syntax error: unexpected \",\"\n");
  CHECK(errors_of(std::string(kMinimal) + "---\n,\n") ==
        "remora.yaml:13:1: YAML syntax error: unexpected \",\"\n");
}

TEST_CASE("the top level must be a map and an empty file has no listener") {
  CHECK(errors_of("- a\n- b\n") ==
        "remora.yaml:1:1: expected a map of settings (listeners:, clusters:, ...) at the top "
        "level, got a list\n");
  CHECK(errors_of("") == "remora.yaml: listeners: at least one listener is required\n");
  CHECK(errors_of("# nothing yet\n") ==
        "remora.yaml: listeners: at least one listener is required\n");
}

TEST_CASE("a second YAML document is an error") {
  CHECK(errors_of(std::string(kMinimal) + "---\nworkers: 2\n") ==
        "remora.yaml:13:1: a second YAML document starts here; remora reads one (check the "
        "indentation, or remove the '---')\n");
}

TEST_CASE("a syntax error in a second document is still reported") {
  // The document after the first is parsed only to be counted; its errors count too.
  CHECK(errors_of(std::string(kMinimal) + "---\n{ bad\n") ==
        "remora.yaml:14:1: YAML syntax error: end of map flow not found\n");
  CHECK(errors_of(std::string(kMinimal) + "---\nworkers: 1\n---\nworkers: 2\n") ==
        "remora.yaml:13:1: a second YAML document starts here; remora reads one (check the "
        "indentation, or remove the '---')\n");
}

TEST_CASE("an alias is the anchored value and is reported where the anchor is") {
  CHECK(errors_of(R"(
listeners:
  - name: &main main
    address: &addr 127.0.0.1:8080
    route_table: *main
route_tables:
  - name: *main
    routes:
      - &route { cluster: app, retry: { attempts: *addr } }
      - *route
clusters:
  - name: app
    endpoints: [ *addr, *main ]
)") == "remora.yaml:2:11: clusters[0].endpoints[1]: invalid endpoint \"main\": missing :port\n"
       "remora.yaml:3:14: route_tables[0].routes[0].retry.attempts: expected a non-negative "
       "integer, got \"127.0.0.1:8080\"\n"
       "remora.yaml:3:14: route_tables[0].routes[1].retry.attempts: expected a non-negative "
       "integer, got \"127.0.0.1:8080\"\n");
  CHECK(errors_of("listeners: []\nroute_tables: [ { name: x, routes: *nowhere } ]\n") ==
        "remora.yaml:2:36: YAML syntax error: the referenced anchor is not defined\n");
}

// ---------------------------------------------------------------------------
// Collecting everything

TEST_CASE("all errors are collected (type and semantic) in file order") {
  LoadedConfig loaded = load_yaml(doc(R"(
listeners:
  - name: main
    address: localhost:8080
    route_table: mian
    protocl: http2
route_tables:
  - name: main
    routes:
      - cluster: ap
        timeout: 5
clusters:
  - name: app
    endpoints: [ 127.0.0.1:9000 ]
    lb: fastest
)"),
                                  "remora.yaml");
  CHECK(loaded.config == nullptr);
  CHECK_FALSE(loaded.ok());
  CHECK(
      lines(loaded.errors) ==
      "remora.yaml:3:14: listeners[0].address: invalid address \"localhost:8080\": \"localhost\" "
      "is not an IP address (use e.g. 127.0.0.1 or 0.0.0.0)\n"
      "remora.yaml:4:18: listeners[0].route_table: unknown route table \"mian\" (did you mean "
      "\"main\"?)\n"
      "remora.yaml:5:5: listeners[0]: unknown field \"protocl\" (did you mean \"protocol\"?)\n"
      "remora.yaml:9:18: route_tables[0].routes[0].cluster: unknown cluster \"ap\" (did you "
      "mean \"app\"?)\n"
      "remora.yaml:10:18: route_tables[0].routes[0].timeout: invalid duration \"5\": missing unit "
      "(ns, us, ms, s, m, h); write e.g. 250ms, 2s, 1m or 1h\n"
      "remora.yaml:14:9: clusters[0].lb: invalid value \"fastest\": expected one of "
      "round_robin, least_request, random, ring_hash, maglev\n");
}

TEST_CASE("a value of the wrong shape is reported once and not again as missing") {
  CHECK(errors_of(R"(
listeners:
  - name: main
    address: { host: 127.0.0.1 }
    route_table: main
  - [ oops ]
  - name: second
    address: 127.0.0.1
    route_table: main
route_tables: [ { name: main, routes: [ { cluster: [ app ] } ] } ]
clusters: [ { name: app, endpoints: 127.0.0.1:9000 } ]
)") == "remora.yaml:3:14: listeners[0].address: expected a string, got a map (quote a value that "
       "starts with [ or {)\n"
       "remora.yaml:5:5: listeners[1]: expected a map, got a list\n"
       "remora.yaml:7:14: listeners[2].address: invalid address \"127.0.0.1\": missing :port\n"
       "remora.yaml:9:52: route_tables[0].routes[0].cluster: expected a string, got a list "
       "(quote a value that starts with [ or {)\n"
       "remora.yaml:10:37: clusters[0].endpoints: expected a list, got \"127.0.0.1:9000\" (write "
       "[ 127.0.0.1:9000 ] for a single item)\n");
}

// ---------------------------------------------------------------------------
// Shorthands

TEST_CASE("a scalar for a message sets its first string field (header matcher / admin / match)") {
  LoadedConfig loaded = load_yaml(doc(R"(
admin: 127.0.0.1:9902
listeners: [ { name: main, address: 127.0.0.1:8080, route_table: main } ]
route_tables:
  - name: main
    routes:
      - match: { prefix: /v2/, headers: { api-version: "2", x-canary: { present: true } } }
        cluster: app
      - match: /api
        cluster: app
clusters: [ { name: app, endpoints: [ 127.0.0.1:9000 ] } ]
)"),
                                  "remora.yaml");
  REQUIRE(lines(loaded.errors) == "");
  const v1::Config& c = *loaded.config;
  CHECK(c.admin().address() == "127.0.0.1:9902");
  const auto& headers = c.route_tables(0).routes(0).match().headers();
  REQUIRE(headers.count("api-version") == 1);
  CHECK(headers.at("api-version").exact() == "2");
  CHECK(headers.at("x-canary").present());
  CHECK(c.route_tables(0).routes(1).match().prefix() == "/api");
}

TEST_CASE("the shorthand does not apply to a message whose first field is not a string") {
  CHECK(errors_of(R"(
listeners: [ { name: main, address: 127.0.0.1:8080, route_table: main } ]
route_tables: [ { name: main, routes: [ { cluster: app, retry: 3 } ] } ]
clusters: [ { name: app, endpoints: [ 127.0.0.1:9000 ] } ]
)") == "remora.yaml:2:64: route_tables[0].routes[0].retry: expected a map, got \"3\"\n");
}

TEST_CASE("errors inside map entries name the key") {
  CHECK(errors_of(R"(
listeners: [ { name: main, address: 127.0.0.1:8080, route_table: main } ]
route_tables:
  - name: main
    routes:
      - cluster: app
        match:
          headers:
            x-version: { exact: "1", regex: "1.*" }
            x-bad: { regex: "([a-z]" }
            x-typo: { exactly: "1" }
clusters: [ { name: app, endpoints: [ 127.0.0.1:9000 ] } ]
)") == "remora.yaml:8:24: route_tables[0].routes[0].match.headers[\"x-version\"]: a header matcher "
       "needs exactly one of exact, regex, present\n"
       "remora.yaml:9:29: route_tables[0].routes[0].match.headers[\"x-bad\"].regex: invalid regex "
       "\"([a-z]\": Mismatched '(' and ')' in regular expression\n"
       "remora.yaml:10:23: route_tables[0].routes[0].match.headers[\"x-typo\"]: unknown field "
       "\"exactly\" (did you mean \"exact\"?)\n");
}

TEST_CASE("a map entry of the wrong shape is reported under its key") {
  LoadedConfig loaded = load_yaml(doc(R"(
listeners: [ { name: main, address: 127.0.0.1:8080, route_table: main } ]
route_tables:
  - name: main
    routes:
      - cluster: app
        match: { headers: { x-a: [ 1 ], x-b: "2" } }
        request_headers: { add: { x-c: { d: e } } }
clusters: [ { name: app, endpoints: [ 127.0.0.1:9000 ] } ]
)"),
                                  "remora.yaml");
  CHECK(lines(loaded.errors) ==
        "remora.yaml:6:34: route_tables[0].routes[0].match.headers[\"x-a\"]: expected a map, got "
        "a list\n"
        "remora.yaml:7:40: route_tables[0].routes[0].request_headers.add[\"x-c\"]: expected a "
        "string, got a map (quote a value that starts with [ or {)\n");
}

// ---------------------------------------------------------------------------
// The whole DESIGN §3 example

TEST_CASE("the full example config loads clean") {
  // DESIGN §3, without the tls blocks (not supported yet) and with the
  // items-v2 cluster its split names.
  LoadedConfig loaded = load_yaml(doc(R"(
node: { id: orders-1, service: orders }
admin: { address: 127.0.0.1:9901 }          # /ready /metrics /config /clusters
workers: 0
listeners:
  - name: inbound                             # traffic to the local service
    address: 0.0.0.0:15006
    protocol: auto                            # auto | http1 | http2
    route_table: inbound
  - name: outbound                            # traffic from the local service
    address: 127.0.0.1:15001
    route_table: outbound
route_tables:
  - name: inbound
    routes:
      - match: { prefix: / }
        cluster: local_app
  - name: outbound
    routes:
      - match: { host: items, prefix: /v2/, headers: { api-version: "2" } }
        split: [ { cluster: items-v2, weight: 10 }, { cluster: items-v1, weight: 90 } ]
        rewrite_prefix: /
        timeout: 2s
        retry: { attempts: 3, per_try_timeout: 500ms,
                 on: [ 5xx, gateway-error, reset, connect-failure ],
                 backoff: { base: 25ms, max: 250ms }, budget_percent: 20 }
        fault: { delay: { duration: 100ms, percent: 10 }, abort: { status: 503, percent: 1 } }
clusters:
  - name: local_app
    endpoints: [ 127.0.0.1:8080 ]
  - name: items-v1
    endpoints: [ "dns:items-v1.svc:8080" ]
    protocol: http2                           # http1 | http2
    lb: least_request                         # round_robin | least_request | random | ring_hash | maglev
    connect_timeout: 1s
    circuit_breaker: { max_connections: 1024, max_pending: 1024, max_requests: 1024, max_retries: 3 }
    outlier_detection: { consecutive_5xx: 5, base_ejection_time: 30s, max_ejection_percent: 50 }
    health_check: { path: /healthz, interval: 5s, timeout: 1s, healthy_threshold: 2, unhealthy_threshold: 3 }
  - name: items-v2
    endpoints: [ "dns:items-v2.svc:8080" ]
observability:
  access_log: { path: stdout, format: json }
  tracing: { otlp_endpoint: "http://127.0.0.1:4318/v1/traces", sample_ratio: 0.01 }
control_plane: { address: 127.0.0.1:18000 }
)"),
                                  "remora.yaml");
  REQUIRE(lines(loaded.errors) == "");
  REQUIRE(loaded.ok());
  const v1::Config& c = *loaded.config;
  CHECK(c.node().id() == "orders-1");
  CHECK(c.listeners_size() == 2);
  CHECK(c.listeners(0).protocol() == v1::Listener::AUTO);
  const v1::Route& route = c.route_tables(1).routes(0);
  CHECK(route.match().host() == "items");
  CHECK(route.match().headers().at("api-version").exact() == "2");
  CHECK(route.split(1).cluster() == "items-v1");
  CHECK(route.split(1).weight() == 90);
  CHECK(route.timeout().seconds() == 2);
  CHECK(route.retry().per_try_timeout().nanos() == 500'000'000);
  CHECK(route.retry().on_size() == 4);
  CHECK(route.retry().backoff().max().nanos() == 250'000'000);
  CHECK(route.fault().abort().status() == 503);
  CHECK(route.fault().delay().percent() == 10.0);
  const v1::Cluster& items = c.clusters(1);
  CHECK(items.protocol() == v1::Cluster::HTTP2);
  CHECK(items.lb() == v1::Cluster::LEAST_REQUEST);
  CHECK(items.outlier_detection().base_ejection_time().seconds() == 30);
  CHECK(items.health_check().healthy_threshold() == 2);
  CHECK(c.observability().access_log().format() == v1::AccessLog::JSON);
  CHECK(c.observability().tracing().sample_ratio() == 0.01);
  CHECK(validate(c).empty());
}

TEST_CASE("keys this release does not run are listed apart from errors with their position") {
  auto loaded = load_yaml(R"(
listeners:
  - name: main
    address: 127.0.0.1:8080
    route_table: main
    tls: { cert_file: /etc/remora/cert.pem, key_file: /etc/remora/key.pem }
route_tables: [ { name: main, routes: [ { cluster: app, retry: { attempts: 2 } } ] } ]
clusters:
  - name: app
    endpoints: [ 127.0.0.1:9000 ]
    tls: {}
observability: { tracing: { sample_ratio: 0.5 } }
)",
                          "remora.yaml");
  CHECK(loaded.ok());
  // retry: is run, so it is not among them.
  CHECK(lines(loaded.unsupported) ==
        "remora.yaml:6:10: listeners[0].tls: tls (mTLS) is not supported yet by this release of "
        "remora (it would be ignored, so it is refused)\n"
        "remora.yaml:11:10: clusters[0].tls: tls (mTLS) is not supported yet by this release of "
        "remora (it would be ignored, so it is refused)\n"
        "remora.yaml:12:27: observability.tracing: tracing is not supported yet by this release "
        "of remora (it would be ignored, so it is refused)\n");
  CHECK(unsupported(*loaded.config).size() == 3);
}

// ---------------------------------------------------------------------------
// Files

TEST_CASE("load_file names the file in every message") {
  std::string path = "/tmp/remora_config_test_" + std::to_string(::getpid()) + ".yaml";
  {
    std::ofstream out(path);
    out << doc(kMinimal) << "workers: many\n";
  }
  LoadedConfig loaded = load_file(path);
  std::remove(path.c_str());
  CHECK(lines(loaded.errors) ==
        path + ":12:10: workers: expected a non-negative integer, got \"many\"\n");

  LoadedConfig missing = load_file("/nonexistent/remora.yaml");
  CHECK(lines(missing.errors) ==
        "/nonexistent/remora.yaml: cannot read file: No such file or directory\n");
}

// ---------------------------------------------------------------------------
// Semantic rules on a typed config (control-plane pushes): no file, no
// position, "path: message".

TEST_CASE("validate: the minimal config is valid") { CHECK(lines(validate(minimal())) == ""); }

TEST_CASE("validate: at least one listener") {
  v1::Config c = minimal();
  c.clear_listeners();
  CHECK(lines(validate(c)) == "listeners: at least one listener is required\n");
}

TEST_CASE("validate: names are required and unique") {
  v1::Config c = minimal();
  *c.add_listeners() = c.listeners(0);
  c.mutable_listeners(1)->set_address("127.0.0.1:8081");
  c.add_listeners()->CopyFrom(c.listeners(0));
  c.mutable_listeners(2)->set_name("");
  c.mutable_listeners(2)->set_address("127.0.0.1:8082");
  *c.add_route_tables() = c.route_tables(0);
  *c.add_clusters() = c.clusters(0);
  c.mutable_clusters(1)->set_name("");
  *c.add_clusters() = c.clusters(0);
  CHECK(lines(validate(c)) ==
        "listeners[1].name: duplicate listener name \"main\" (also listeners[0])\n"
        "listeners[2].name: a listener needs a name\n"
        "route_tables[1].name: duplicate route table name \"main\" (also route_tables[0])\n"
        "clusters[1].name: a cluster needs a name\n"
        "clusters[2].name: duplicate cluster name \"app\" (also clusters[0])\n");
}

TEST_CASE("validate: references to route tables and clusters must resolve") {
  v1::Config c = minimal();
  c.mutable_listeners(0)->set_route_table("mian");
  first_route(c).set_cluster("apps");
  CHECK(lines(validate(c)) ==
        "listeners[0].route_table: unknown route table \"mian\" (did you mean \"main\"?)\n"
        "route_tables[0].routes[0].cluster: unknown cluster \"apps\" (did you mean \"app\"?)\n");
  c.mutable_listeners(0)->clear_route_table();
  first_route(c).set_cluster("payments");
  CHECK(lines(validate(c)) ==
        "listeners[0].route_table: a listener needs a route_table\n"
        "route_tables[0].routes[0].cluster: unknown cluster \"payments\"\n");
}

TEST_CASE("validate: a route has exactly one of cluster and split") {
  v1::Config c = minimal();
  auto* split = first_route(c).add_split();
  split->set_cluster("app");
  split->set_weight(1);
  CHECK(lines(validate(c)) ==
        "route_tables[0].routes[0]: a route has either cluster or split, not both\n");
  first_route(c).clear_cluster();
  CHECK(lines(validate(c)) == "");
  first_route(c).clear_split();
  CHECK(lines(validate(c)) == "route_tables[0].routes[0]: a route needs a cluster or a split\n");
}

TEST_CASE("validate: split entries name a cluster and carry a positive weight") {
  v1::Config c = minimal();
  first_route(c).clear_cluster();
  auto* a = first_route(c).add_split();
  a->set_cluster("app");
  a->set_weight(0);
  auto* b = first_route(c).add_split();
  b->set_weight(5);
  auto* d = first_route(c).add_split();
  d->set_cluster("ap");
  d->set_weight(5);
  CHECK(lines(validate(c)) ==
        "route_tables[0].routes[0].split[0].weight: must be greater than 0\n"
        "route_tables[0].routes[0].split[1].cluster: a split entry needs a cluster\n"
        "route_tables[0].routes[0].split[2].cluster: unknown cluster \"ap\" (did you mean "
        "\"app\"?)\n");
  a->set_weight(4'000'000'000);
  b->set_cluster("app");
  b->set_weight(4'000'000'000);
  d->set_cluster("app");
  CHECK(lines(validate(c)) ==
        "route_tables[0].routes[0].split: weights add up to more than 4294967295\n");
}

TEST_CASE("validate: listener and admin addresses are IP literals with a port") {
  struct Case {
    const char* address;
    const char* error;  // "" = valid
  };
  for (Case k : {
           Case{"0.0.0.0:80", ""},
           Case{"[::1]:8080", ""},
           Case{"[::]:8081", ""},
           Case{"10.1.2.3:65535", ""},
           Case{"localhost:80",
                "invalid address \"localhost:80\": \"localhost\" is not an IP address (use e.g. "
                "127.0.0.1 or 0.0.0.0)"},
           Case{"127.0.0.1", "invalid address \"127.0.0.1\": missing :port"},
           Case{
               "127.0.0.1:0",
               "invalid address \"127.0.0.1:0\": port must be a number from 1 to 65535, got \"0\""},
           Case{"127.0.0.1:65536",
                "invalid address \"127.0.0.1:65536\": port must be a number from 1 to 65535, got "
                "\"65536\""},
           Case{"127.0.0.1:http",
                "invalid address \"127.0.0.1:http\": port must be a number from 1 to 65535, got "
                "\"http\""},
           Case{"::1:80",
                "invalid address \"::1:80\": write IPv6 addresses in brackets, e.g. "
                "[::1]:8080"},
           Case{"[::1]80", "invalid address \"[::1]80\": missing :port after ']'"},
           Case{"[1.2.3.4]:80",
                "invalid address \"[1.2.3.4]:80\": \"1.2.3.4\" is not an IPv6 address"},
           Case{":80", "invalid address \":80\": missing host before :port"},
           Case{"256.1.1.1:80",
                "invalid address \"256.1.1.1:80\": \"256.1.1.1\" is not an IP address (use e.g. "
                "127.0.0.1 or 0.0.0.0)"},
       }) {
    std::string address = k.address;
    CAPTURE(address);
    v1::Config c = minimal();
    c.mutable_listeners(0)->set_address(k.address);
    std::string expected = *k.error ? std::string("listeners[0].address: ") + k.error + "\n" : "";
    CHECK(lines(validate(c)) == expected);

    c = minimal();
    c.mutable_admin()->set_address(k.address);
    expected = *k.error ? std::string("admin.address: ") + k.error + "\n" : "";
    CHECK(lines(validate(c)) == expected);
  }
  v1::Config c = minimal();
  c.mutable_listeners(0)->clear_address();
  CHECK(lines(validate(c)) ==
        "listeners[0].address: a listener needs an address (e.g. 0.0.0.0:8080)\n");
}

TEST_CASE("validate: listeners and the admin endpoint do not share an address") {
  v1::Config c = minimal();
  *c.add_listeners() = c.listeners(0);
  c.mutable_listeners(1)->set_name("second");
  c.add_listeners()->CopyFrom(c.listeners(0));
  c.mutable_listeners(2)->set_name("third");
  c.mutable_listeners(2)->set_address("0.0.0.0:8080");
  c.add_listeners()->CopyFrom(c.listeners(0));
  c.mutable_listeners(3)->set_name("fourth");
  c.mutable_listeners(3)->set_address("0.0.0.0:9901");
  c.add_listeners()->CopyFrom(c.listeners(0));
  c.mutable_listeners(4)->set_name("fifth");
  c.mutable_listeners(4)->set_address("[::1]:8080");  // another family: no clash
  CHECK(lines(validate(c)) ==
        "listeners[1].address: address 127.0.0.1:8080 is already used by listeners[0]\n"
        "listeners[2].address: address 0.0.0.0:8080 conflicts with listeners[0] (127.0.0.1:8080)\n"
        "listeners[3].address: address 0.0.0.0:9901 conflicts with admin (the default "
        "127.0.0.1:9901; set admin.address to move it)\n");

  c = minimal();
  c.mutable_admin()->set_address("[::]:8080");  // dual-stack: takes IPv4 too
  CHECK(lines(validate(c)) ==
        "listeners[0].address: address 127.0.0.1:8080 conflicts with admin ([::]:8080)\n");
}

TEST_CASE("validate: an endpoint's weight is weight=1..128 after the address") {
  v1::Config c = minimal();
  auto* endpoints = c.mutable_clusters(0)->mutable_endpoints();
  endpoints->Clear();
  for (const char* e : {"10.0.0.1:80 weight=3", "dns:items.svc:8080 weight=128", "10.0.0.2:80 weight=0",
                        "10.0.0.3:80 weight=129", "10.0.0.4:80 weight=x", "10.0.0.5:80 wieght=2",
                        "10.0.0.1:80 weight=2"})
    endpoints->Add(e);
  CHECK(lines(validate(c)) ==
        "clusters[0].endpoints[2]: invalid endpoint \"10.0.0.2:80 weight=0\": weight must be a "
        "whole number from 1 to 128, got \"0\"\n"
        "clusters[0].endpoints[3]: invalid endpoint \"10.0.0.3:80 weight=129\": weight must be a "
        "whole number from 1 to 128, got \"129\"\n"
        "clusters[0].endpoints[4]: invalid endpoint \"10.0.0.4:80 weight=x\": weight must be a "
        "whole number from 1 to 128, got \"x\"\n"
        "clusters[0].endpoints[5]: invalid endpoint \"10.0.0.5:80 wieght=2\": unknown endpoint "
        "option \"wieght=2\" (the only one is weight=N)\n"
        "clusters[0].endpoints[6]: duplicate endpoint \"10.0.0.1:80 weight=2\" (also "
        "clusters[0].endpoints[0])\n");
}

TEST_CASE("validate: cluster endpoints are ip:port or dns:name:port and at least one") {
  v1::Config c = minimal();
  auto* endpoints = c.mutable_clusters(0)->mutable_endpoints();
  endpoints->Clear();
  for (const char* e :
       {"10.0.0.1:80", "[fd00::1]:80", "dns:items.svc.cluster.local:8080", "items:8080",
        "dns:items", "dns:bad_name:80", "10.0.0.1:80", "[fd00:0::1]:80", "10.0.0.2"}) {
    endpoints->Add(e);
  }
  CHECK(lines(validate(c)) ==
        "clusters[0].endpoints[3]: invalid endpoint \"items:8080\": \"items\" is not an IP "
        "address; write \"dns:items:8080\" to resolve it by DNS\n"
        "clusters[0].endpoints[4]: invalid endpoint \"dns:items\": missing :port\n"
        "clusters[0].endpoints[5]: invalid endpoint \"dns:bad_name:80\": \"bad_name\" is not a "
        "valid hostname\n"
        "clusters[0].endpoints[6]: duplicate endpoint \"10.0.0.1:80\" (also "
        "clusters[0].endpoints[0])\n"
        "clusters[0].endpoints[7]: duplicate endpoint \"[fd00:0::1]:80\" (also "
        "clusters[0].endpoints[1])\n"
        "clusters[0].endpoints[8]: invalid endpoint \"10.0.0.2\": missing :port\n");
  endpoints->Clear();
  CHECK(
      lines(validate(c)) ==
      "clusters[0].endpoints: a cluster needs at least one endpoint (ip:port or dns:name:port)\n");
}

TEST_CASE("validate: route match prefix and path and host") {
  v1::Config c = minimal();
  auto* match = first_route(c).mutable_match();
  match->set_prefix("api");
  match->set_path("v1");
  match->set_host("items.svc:8080");
  CHECK(lines(validate(c)) ==
        "route_tables[0].routes[0].match.prefix: must start with \"/\", got \"api\"\n"
        "route_tables[0].routes[0].match.path: must start with \"/\", got \"v1\"\n"
        "route_tables[0].routes[0].match: set prefix or path, not both\n"
        "route_tables[0].routes[0].match.host: invalid host \"items.svc:8080\": expected a "
        "hostname or *.suffix, without a port\n");
  for (const char* host : {"items", "Items.Example.COM", "*.example.com", "a-b.c"}) {
    CAPTURE(host);
    match->Clear();
    match->set_host(host);
    CHECK(lines(validate(c)) == "");
  }
  for (const char* host : {"*", "*example.com", "a..b", "-a.b", "a.*.b", "ex ample"}) {
    CAPTURE(host);
    match->Clear();
    match->set_host(host);
    CHECK(lines(validate(c)) ==
          std::string("route_tables[0].routes[0].match.host: invalid host \"") + host +
              "\": expected a hostname or *.suffix, without a port\n");
  }
}

TEST_CASE("validate: a header matcher sets exactly one of exact / regex / present") {
  v1::Config c = minimal();
  auto& headers = *first_route(c).mutable_match()->mutable_headers();
  headers["x-exact"].set_exact("1");
  headers["x-regex"].set_regex("^v[0-9]+$");
  headers["x-present"].set_present(true);
  CHECK(lines(validate(c)) == "");
  headers["x-none"];
  headers["x-two"].set_exact("1");
  headers["x-two"].set_present(true);
  headers["x-bad-regex"].set_regex("[a-");
  headers["bad name"].set_exact("1");
  CHECK(lines(validate(c)) ==
        "route_tables[0].routes[0].match.headers[\"bad name\"]: invalid header name \"bad name\"\n"
        "route_tables[0].routes[0].match.headers[\"x-bad-regex\"].regex: invalid regex \"[a-\": "
        "Invalid end of '[x-x]' range in regular expression\n"
        "route_tables[0].routes[0].match.headers[\"x-none\"]: a header matcher needs exactly one "
        "of exact, regex, present\n"
        "route_tables[0].routes[0].match.headers[\"x-two\"]: a header matcher needs exactly one "
        "of exact, regex, present\n");
}

TEST_CASE("validate: retry policy") {
  v1::Config c = minimal();
  auto* retry = first_route(c).mutable_retry();
  retry->set_attempts(10);
  retry->add_on("5xx");
  retry->add_on("gateway-eror");
  retry->add_on("connection-failure");
  retry->add_on("retriable-status-codes");
  retry->set_budget_percent(101);
  CHECK(lines(validate(c)) ==
        "route_tables[0].routes[0].retry.on[1]: unknown retry condition \"gateway-eror\" (did you "
        "mean \"gateway-error\"?): expected one of 5xx, gateway-error, reset, connect-failure, "
        "retriable-status-codes, unavailable, cancelled, deadline-exceeded, resource-exhausted\n"
        "route_tables[0].routes[0].retry.on[2]: unknown retry condition \"connection-failure\" "
        "(did you mean \"connect-failure\"?): expected one of 5xx, gateway-error, reset, "
        "connect-failure, retriable-status-codes, unavailable, cancelled, deadline-exceeded, "
        "resource-exhausted\n"
        "route_tables[0].routes[0].retry.retriable_status_codes: required when on includes "
        "retriable-status-codes\n"
        "route_tables[0].routes[0].retry.budget_percent: must be between 0 and 100, got 101\n");

  retry->Clear();
  retry->set_attempts(11);
  retry->add_retriable_status_codes(503);
  retry->add_retriable_status_codes(99);
  retry->add_retriable_status_codes(600);
  *retry->mutable_backoff()->mutable_base() = seconds(1);
  *retry->mutable_backoff()->mutable_max() = seconds(0, 500'000'000);
  CHECK(lines(validate(c)) ==
        "route_tables[0].routes[0].retry.attempts: must be at most 10 (1 = no retry), got 11\n"
        "route_tables[0].routes[0].retry.retriable_status_codes[1]: must be an HTTP status from "
        "100 to 599, got 99\n"
        "route_tables[0].routes[0].retry.retriable_status_codes[2]: must be an HTTP status from "
        "100 to 599, got 600\n"
        "route_tables[0].routes[0].retry.backoff.max: must not be less than backoff.base\n");
}

TEST_CASE("validate: fault injection") {
  v1::Config c = minimal();
  auto* fault = first_route(c).mutable_fault();
  CHECK(lines(validate(c)) ==
        "route_tables[0].routes[0].fault: a fault needs a delay or an abort\n");

  fault->mutable_delay()->set_percent(150);
  fault->mutable_abort()->set_percent(-1);
  fault->set_header("x fault");
  CHECK(
      lines(validate(c)) ==
      "route_tables[0].routes[0].fault.delay.duration: a delay needs a duration\n"
      "route_tables[0].routes[0].fault.delay.percent: must be between 0 and 100, got 150\n"
      "route_tables[0].routes[0].fault.abort: an abort needs a status (200..599) or a grpc_status "
      "(1..16)\n"
      "route_tables[0].routes[0].fault.abort.percent: must be between 0 and 100, got -1\n"
      "route_tables[0].routes[0].fault.header: invalid header name \"x fault\"\n");

  fault->Clear();
  for (std::uint32_t status : {199u, 600u}) {
    fault->mutable_abort()->set_status(status);
    fault->mutable_abort()->set_percent(100);
    CHECK(lines(validate(c)) ==
          "route_tables[0].routes[0].fault.abort.status: must be between 200 "
          "and 599, got " +
              std::to_string(status) + "\n");
  }
  fault->mutable_abort()->set_status(0);
  fault->mutable_abort()->set_grpc_status(17);
  CHECK(lines(validate(c)) ==
        "route_tables[0].routes[0].fault.abort.grpc_status: must be between 1 and 16, got 17\n");
  fault->mutable_abort()->set_grpc_status(14);
  CHECK(lines(validate(c)) == "");
}

TEST_CASE("validate: rewrite_prefix and header mutations and rate limit and route names") {
  v1::Config c = minimal();
  v1::Route& route = first_route(c);
  route.set_name("r");
  route.set_rewrite_prefix("v2");
  (*route.mutable_request_headers()->mutable_add())["x-ok"] = "1";
  (*route.mutable_request_headers()->mutable_add())["x-inject"] = "1\r\nx-evil: 1";
  route.mutable_response_headers()->add_remove("server");
  route.mutable_response_headers()->add_remove("bad:name");
  route.mutable_rate_limit()->set_burst(5);
  *c.mutable_route_tables(0)->add_routes() = route;
  CHECK(lines(validate(c)) ==
        "route_tables[0].routes[0].rewrite_prefix: must start with \"/\", got \"v2\"\n"
        "route_tables[0].routes[0].request_headers.add[\"x-inject\"]: a header value cannot "
        "contain CR, LF or NUL\n"
        "route_tables[0].routes[0].response_headers.remove[1]: invalid header name \"bad:name\"\n"
        "route_tables[0].routes[0].rate_limit.rate: must be greater than 0 (requests per second), "
        "got 0\n"
        "route_tables[0].routes[1].name: duplicate route name \"r\" (also "
        "route_tables[0].routes[0])\n"
        "route_tables[0].routes[1].rewrite_prefix: must start with \"/\", got \"v2\"\n"
        "route_tables[0].routes[1].request_headers.add[\"x-inject\"]: a header value cannot "
        "contain CR, LF or NUL\n"
        "route_tables[0].routes[1].response_headers.remove[1]: invalid header name \"bad:name\"\n"
        "route_tables[0].routes[1].rate_limit.rate: must be greater than 0 (requests per second), "
        "got 0\n");
}

TEST_CASE("validate: cluster policies") {
  v1::Config c = minimal();
  v1::Cluster& cluster = *c.mutable_clusters(0);
  cluster.mutable_outlier_detection()->set_max_ejection_percent(101);
  cluster.mutable_health_check()->set_path("healthz");
  cluster.set_lb(static_cast<v1::Cluster::LbPolicy>(9));
  cluster.set_protocol(static_cast<v1::Cluster::Protocol>(5));
  cluster.mutable_tls()->set_ca_file("/etc/ca.pem");
  CHECK(lines(validate(c)) ==
        "clusters[0].protocol: unknown protocol value 5\n"
        "clusters[0].lb: unknown lb value 9\n"
        "clusters[0].outlier_detection.max_ejection_percent: must be between 0 and 100, got 101\n"
        "clusters[0].health_check.path: a health check needs a path starting with \"/\", got "
        "\"healthz\"\n");
}

TEST_CASE("validate: listener protocol") {
  v1::Config c = minimal();
  c.mutable_listeners(0)->set_protocol(static_cast<v1::Listener::Protocol>(3));
  CHECK(lines(validate(c)) == "listeners[0].protocol: unknown protocol value 3\n");
}

TEST_CASE("validate: observability") {
  v1::Config c = minimal();
  auto* o = c.mutable_observability();
  for (const char* level : {"trace", "debug", "info", "warn", "error"}) {
    o->set_log_level(level);
    CHECK(lines(validate(c)) == "");
  }
  o->set_log_level("warning");
  o->mutable_access_log()->set_format(static_cast<v1::AccessLog::Format>(7));
  o->mutable_tracing()->set_sample_ratio(1.5);
  o->mutable_tracing()->set_otlp_endpoint("127.0.0.1:4318");
  CHECK(lines(validate(c)) ==
        "observability.log_level: unknown log level \"warning\" (did you mean \"warn\"?): expected "
        "one of trace, debug, info, warn, error\n"
        "observability.access_log.format: unknown format value 7\n"
        "observability.tracing.sample_ratio: must be between 0 and 1, got 1.5\n"
        "observability.tracing.otlp_endpoint: expected an http:// or https:// URL, got "
        "\"127.0.0.1:4318\"\n");
  o->Clear();
  o->mutable_tracing()->set_sample_ratio(-0.1);
  CHECK(lines(validate(c)) ==
        "observability.tracing.sample_ratio: must be between 0 and 1, got -0.1\n");
}

TEST_CASE("validate: the control plane needs a node id and a host:port") {
  v1::Config c = minimal();
  c.mutable_control_plane()->set_address("control.mesh.local:18000");
  CHECK(lines(validate(c)) == "node.id: required when control_plane.address is set\n");
  c.mutable_node()->set_id("orders-1");
  CHECK(lines(validate(c)) == "");
  c.mutable_control_plane()->set_address("control.mesh.local");
  CHECK(lines(validate(c)) ==
        "control_plane.address: invalid address \"control.mesh.local\": missing :port\n");
}

TEST_CASE("validate: every duration that is set must be positive") {
  v1::Config c = minimal();
  *c.mutable_drain_timeout() = seconds(0);
  *c.mutable_listeners(0)->mutable_limits()->mutable_idle_timeout() = seconds(-5);
  *first_route(c).mutable_timeout() = seconds(1, -1);  // mixed signs: not a valid Duration
  *first_route(c).mutable_retry()->mutable_backoff()->mutable_base() = seconds(0, 1);
  *c.mutable_clusters(0)->mutable_pool()->mutable_idle_timeout() = seconds(0, -250'000'000);
  *c.mutable_clusters(0)->mutable_connect_timeout() = seconds(5);
  CHECK(lines(validate(c)) ==
        "listeners[0].limits.idle_timeout: must be greater than 0, got -5s\n"
        "route_tables[0].routes[0].timeout: invalid duration (seconds 1, nanos -1)\n"
        "clusters[0].pool.idle_timeout: must be greater than 0, got -250ms\n"
        "drain_timeout: must be greater than 0, got 0s\n");
}

TEST_CASE("validate: semantic errors from a file carry the offending node's position") {
  CHECK(errors_of(R"(
listeners:
  - name: main
    address: 127.0.0.1:8080
    route_table: main
route_tables:
  - name: main
    routes:
      - match: { prefix: api }
        split:
          - { cluster: app, weight: 0 }
clusters:
  - name: app
    endpoints: [ 127.0.0.1:9000 ]
    health_check: { interval: 5s }
)") == "remora.yaml:8:26: route_tables[0].routes[0].match.prefix: must start with \"/\", got "
       "\"api\"\n"
       "remora.yaml:10:37: route_tables[0].routes[0].split[0].weight: must be greater than 0\n"
       "remora.yaml:14:19: clusters[0].health_check.path: a health check needs a path starting "
       "with \"/\", got \"\"\n");
}

// ---------------------------------------------------------------------------
// Address helpers shared with the runtime

TEST_CASE("address parsing gives canonical host and port") {
  HostPortResult v6 = parse_ip_port("[fd00:0:0::1]:443");
  REQUIRE(v6.ok());
  CHECK(v6.value.kind == HostPort::Kind::ipv6);
  CHECK(v6.value.host == "fd00::1");
  CHECK(v6.value.port == 443);
  CHECK(v6.value.to_string() == "[fd00::1]:443");

  HostPortResult dns = parse_endpoint("dns:items-v1.svc:8080");
  REQUIRE(dns.ok());
  CHECK(dns.value.kind == HostPort::Kind::dns);
  CHECK(dns.value.host == "items-v1.svc");
  CHECK(dns.value.to_string() == "dns:items-v1.svc:8080");

  HostPortResult named = parse_host_port("control:18000");
  REQUIRE(named.ok());
  CHECK(named.value.kind == HostPort::Kind::dns);

  CHECK(is_hostname("a.b-c.d"));
  CHECK_FALSE(is_hostname("a.b."));
  CHECK_FALSE(is_hostname(std::string(64, 'a')));
  CHECK(is_hostname(std::string(63, 'a')));
}
