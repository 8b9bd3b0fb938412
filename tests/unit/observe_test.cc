// The /metrics page as Prometheus scrapes it: well-formed text exposition,
// stable series, and counters that count.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "remora/observe/metrics.h"
#include "remora/policy/circuit_breaker.h"
#include "remora/version.h"

using namespace remora::observe;

namespace {

// ---- a small parser for the Prometheus text format (version 0.0.4)

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct Family {
  std::string help;
  std::string type;
  bool help_seen = false;
  bool type_seen = false;
};

struct Exposition {
  std::map<std::string, Family> families;
  std::vector<Sample> samples;
  std::vector<std::string> errors;  // empty when the text is well formed

  // The one sample with this name and exactly these labels, or nullptr.
  const Sample* find(const std::string& name, const std::map<std::string, std::string>& labels) const {
    const Sample* found = nullptr;
    for (const auto& s : samples)
      if (s.name == name && s.labels == labels) {
        if (found) return nullptr;  // duplicates are an error, reported in `errors`
        found = &s;
      }
    return found;
  }
  double value(const std::string& name, const std::map<std::string, std::string>& labels) const {
    const auto* s = find(name, labels);
    return s ? s->value : std::numeric_limits<double>::quiet_NaN();
  }
};

bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}
bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }

bool valid_metric_name(std::string_view name) {
  if (name.empty() || !is_name_start(name[0])) return false;
  for (char c : name)
    if (!is_name_char(c)) return false;
  return true;
}

bool parse_value(std::string_view text, double& out) {
  if (text == "+Inf") return out = std::numeric_limits<double>::infinity(), true;
  if (text == "-Inf") return out = -std::numeric_limits<double>::infinity(), true;
  if (text == "NaN") return out = std::numeric_limits<double>::quiet_NaN(), true;
  std::string s(text);
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return !s.empty() && end == s.c_str() + s.size();
}

// Which family does a sample name belong to, given the declared families?
std::string family_of(const Exposition& e, const std::string& sample) {
  if (e.families.count(sample)) return sample;
  for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
    if (sample.size() > suffix.size() && sample.ends_with(suffix)) {
      auto base = sample.substr(0, sample.size() - suffix.size());
      auto it = e.families.find(base);
      if (it != e.families.end() && (it->second.type == "histogram" || it->second.type == "summary"))
        return base;
    }
  }
  return {};
}

Exposition parse(const std::string& text) {
  Exposition e;
  if (!text.empty() && text.back() != '\n') e.errors.push_back("text does not end in a newline");
  std::istringstream in(text);
  std::string line;
  int number = 0;
  std::set<std::string> series;
  while (std::getline(in, line)) {
    ++number;
    auto where = "line " + std::to_string(number) + ": " + line;
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::istringstream words(line);
      std::string hash, keyword, name;
      words >> hash >> keyword >> name;
      if (keyword != "HELP" && keyword != "TYPE") continue;  // a comment
      if (!valid_metric_name(name)) e.errors.push_back("bad family name: " + where);
      auto& f = e.families[name];
      std::string rest;
      std::getline(words, rest);
      if (!rest.empty() && rest[0] == ' ') rest.erase(0, 1);
      if (keyword == "HELP") {
        if (f.help_seen) e.errors.push_back("second HELP: " + where);
        f.help_seen = true;
        f.help = rest;
      } else {
        if (f.type_seen) e.errors.push_back("second TYPE: " + where);
        static const std::set<std::string> kTypes = {"counter", "gauge", "histogram", "summary",
                                                      "untyped"};
        if (!kTypes.count(rest)) e.errors.push_back("bad TYPE: " + where);
        f.type_seen = true;
        f.type = rest;
      }
      continue;
    }
    Sample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    if (!valid_metric_name(s.name)) e.errors.push_back("bad sample name: " + where);
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        size_t eq = line.find('=', i);
        if (eq == std::string::npos || eq + 1 >= line.size() || line[eq + 1] != '"') {
          e.errors.push_back("bad label: " + where);
          break;
        }
        std::string label = line.substr(i, eq - i);
        if (!valid_metric_name(label) || label.find(':') != std::string::npos)
          e.errors.push_back("bad label name: " + where);
        std::string value;
        size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\' && j + 1 < line.size()) {
            ++j;
            if (line[j] == 'n') value += '\n';
            else if (line[j] == '\\' || line[j] == '"') value += line[j];
            else e.errors.push_back("bad escape: " + where);
          } else {
            value += line[j];
          }
        }
        if (j >= line.size()) {
          e.errors.push_back("unterminated label value: " + where);
          break;
        }
        if (s.labels.count(label)) e.errors.push_back("repeated label: " + where);
        s.labels[label] = value;
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      if (i >= line.size()) {
        e.errors.push_back("unterminated label set: " + where);
        continue;
      }
      ++i;  // '}'
    }
    if (i >= line.size() || line[i] != ' ') {
      e.errors.push_back("no value: " + where);
      continue;
    }
    auto value_text = std::string_view(line).substr(i + 1);
    auto space = value_text.find(' ');  // an optional timestamp follows
    if (!parse_value(value_text.substr(0, space), s.value))
      e.errors.push_back("bad value: " + where);
    auto family = family_of(e, s.name);
    if (family.empty() || !e.families[family].type_seen)
      e.errors.push_back("sample before its TYPE: " + where);
    std::string key = s.name + "{";
    for (const auto& [k, v] : s.labels) key += k + "=\"" + v + "\",";
    if (!series.insert(key).second) e.errors.push_back("duplicate series: " + where);
    e.samples.push_back(std::move(s));
  }
  for (const auto& [name, f] : e.families) {
    if (!f.help_seen) e.errors.push_back("no HELP for " + name);
    if (!f.type_seen) e.errors.push_back("no TYPE for " + name);
  }
  return e;
}

std::string joined(const std::vector<std::string>& errors) {
  std::string out;
  for (const auto& e : errors) out += e + "\n";
  return out;
}

// A Metrics with a bit of everything in it.
void populate(Metrics& m) {
  auto& ok = m.requests("inbound", "orders", "orders-v1");
  ok.count_status(Protocol::kHttp1, 200);
  ok.count_status(Protocol::kHttp1, 204);
  ok.count_status(Protocol::kHttp1, 503);
  m.requests("inbound", "orders", "orders-v2").count_status(Protocol::kHttp1, 404);
  auto& grpc = m.requests("inbound", "orders", "orders-v1");
  grpc.count_status(Protocol::kHttp2, 200);
  grpc.count_grpc_status(0);
  grpc.count_grpc_status(14);
  grpc.count_grpc_status(99);  // not a gRPC code: UNKNOWN
  auto& d = m.duration("inbound", "orders");
  d.observe(0.0003);
  d.observe(0.001);
  d.observe(0.2);
  d.observe(3.0);
  auto& l = m.listener("inbound");
  l.active_connections.add(3);
  l.rejected_for("uri_too_long").add();
  auto& c = m.cluster("orders-v1");
  c.active_connections.add(2);
  c.connect_failures.add(4);
  c.refused_stream_retries.add(3);
  c.circuit_open.add(5);
  static remora::policy::CircuitBreaker breaker({.max_connections = 10,
                                                 .max_pending = 20,
                                                 .max_requests = 30,
                                                 .max_retries = 4});
  static auto held = breaker.try_acquire(remora::policy::Resource::kRequests);
  c.breaker = &breaker;
  auto& route = m.route("inbound", "orders");
  route.rate_limited.add(7);
  route.fault_aborts.add(2);
  route.retries.add(4);
  l.count(H2Defence::kRapidReset);
  m.reloads_ok.add(2);
  m.reloads_failed.add();
}

}  // namespace

TEST_CASE("render: the exposition is well-formed Prometheus text") {
  Metrics m;
  populate(m);
  auto text = m.render();
  auto e = parse(text);
  INFO(text);
  CHECK(joined(e.errors) == "");

  const std::map<std::string, std::string> expected = {
      {"remora_build_info", "gauge"},
      {"remora_requests_total", "counter"},
      {"remora_request_duration_seconds", "histogram"},
      {"remora_downstream_connections_active", "gauge"},
      {"remora_downstream_rejected_total", "counter"},
      {"remora_upstream_connections_active", "gauge"},
      {"remora_upstream_connect_failures_total", "counter"},
      {"remora_config_reloads_total", "counter"},
      {"remora_grpc_requests_total", "counter"},
      {"remora_h2_defence_total", "counter"},
      {"remora_upstream_refused_stream_retries_total", "counter"},
      {"remora_circuit_open_total", "counter"},
      {"remora_circuit_breaker_occupancy", "gauge"},
      {"remora_circuit_breaker_limit", "gauge"},
      {"remora_rate_limited_total", "counter"},
      {"remora_faults_total", "counter"},
      {"remora_retries_total", "counter"},
      {"remora_retry_budget_exhausted_total", "counter"},
      {"remora_retry_overflow_total", "counter"},
      {"remora_outlier_ejections_total", "counter"},
      {"remora_lb_panic_total", "counter"},
      {"remora_health_checks_total", "counter"},
      {"remora_upstream_endpoints", "gauge"},
      {"remora_upstream_panic", "gauge"},
  };
  for (const auto& [name, type] : expected) {
    CAPTURE(name);
    REQUIRE(e.families.count(name) == 1);
    CHECK(e.families.at(name).type == type);
    CHECK_FALSE(e.families.at(name).help.empty());
  }
  CHECK(e.families.size() == expected.size());
}

TEST_CASE("render: counters are named *_total and only the family's own name is used") {
  Metrics m;
  populate(m);
  auto text = m.render();
  auto e = parse(text);
  INFO(text);
  for (const auto& [name, family] : e.families)
    if (family.type == "counter") CHECK_MESSAGE(name.ends_with("_total"), name);
  for (const auto& s : e.samples) {
    CAPTURE(s.name);
    CHECK(s.name.find("_total_total") == std::string::npos);
    auto family = family_of(e, s.name);
    REQUIRE_FALSE(family.empty());
    if (e.families[family].type == "counter") CHECK(s.name == family);
  }
}

TEST_CASE("render: values of every family") {
  Metrics m;
  populate(m);
  auto e = parse(m.render());
  REQUIRE(joined(e.errors) == "");

  CHECK(e.value("remora_build_info", {{"version", remora::kVersion}, {"revision", remora::kRevision}}) ==
        1);
  auto req = [&](const char* cluster, const char* cls) {
    return e.value("remora_requests_total", {{"listener", "inbound"},
                                             {"route", "orders"},
                                             {"cluster", cluster},
                                             {"protocol", "http1"}, {"status_class", cls}});
  };
  CHECK(req("orders-v1", "2xx") == 2);
  CHECK(req("orders-v1", "5xx") == 1);
  CHECK(req("orders-v1", "4xx") == 0);
  CHECK(req("orders-v1", "1xx") == 0);
  CHECK(req("orders-v1", "3xx") == 0);
  CHECK(req("orders-v2", "4xx") == 1);
  CHECK(e.value("remora_requests_total", {{"listener", "inbound"},
                                          {"route", "orders"},
                                          {"cluster", "orders-v1"},
                                          {"protocol", "http2"},
                                          {"status_class", "2xx"}}) == 1);
  auto grpc_calls = [&](const char* code) {
    return e.value("remora_grpc_requests_total", {{"listener", "inbound"},
                                                  {"route", "orders"},
                                                  {"cluster", "orders-v1"},
                                                  {"grpc_status", code}});
  };
  CHECK(grpc_calls("0") == 1);
  CHECK(grpc_calls("14") == 1);
  CHECK(grpc_calls("2") == 1);
  CHECK(std::isnan(grpc_calls("5")));  // codes never seen are not exported
  CHECK(e.value("remora_h2_defence_total", {{"listener", "inbound"}, {"defence", "rapid_reset"}}) ==
        1);
  CHECK(e.value("remora_h2_defence_total", {{"listener", "inbound"}, {"defence", "flood"}}) == 0);
  CHECK(e.value("remora_upstream_refused_stream_retries_total", {{"cluster", "orders-v1"}}) == 3);
  CHECK(e.value("remora_circuit_open_total", {{"cluster", "orders-v1"}}) == 5);
  CHECK(e.value("remora_circuit_breaker_occupancy",
                {{"cluster", "orders-v1"}, {"resource", "requests"}}) == 1);
  CHECK(e.value("remora_circuit_breaker_limit",
                {{"cluster", "orders-v1"}, {"resource", "requests"}}) == 30);
  CHECK(e.value("remora_rate_limited_total", {{"listener", "inbound"}, {"route", "orders"}}) == 7);
  CHECK(e.value("remora_faults_total",
                {{"listener", "inbound"}, {"route", "orders"}, {"kind", "abort"}}) == 2);
  CHECK(e.value("remora_faults_total",
                {{"listener", "inbound"}, {"route", "orders"}, {"kind", "delay"}}) == 0);
  CHECK(e.value("remora_retries_total", {{"listener", "inbound"}, {"route", "orders"}}) == 4);

  CHECK(e.value("remora_downstream_connections_active", {{"listener", "inbound"}}) == 3);
  // Every refusal reason is exported from the start, at 0, so rate() works.
  for (auto reason : kRejectReasons) {
    CAPTURE(reason);
    double expected = reason == "uri_too_long" ? 1 : 0;
    CHECK(e.value("remora_downstream_rejected_total",
                  {{"listener", "inbound"}, {"reason", std::string(reason)}}) == expected);
  }
  CHECK(e.value("remora_upstream_connections_active", {{"cluster", "orders-v1"}}) == 2);
  CHECK(e.value("remora_upstream_connect_failures_total", {{"cluster", "orders-v1"}}) == 4);
  CHECK(e.value("remora_config_reloads_total", {{"result", "ok"}}) == 2);
  CHECK(e.value("remora_config_reloads_total", {{"result", "failed"}}) == 1);
}

TEST_CASE("render: histogram buckets are cumulative - end in +Inf - and +Inf == _count") {
  Metrics m;
  populate(m);
  auto e = parse(m.render());
  REQUIRE(joined(e.errors) == "");
  const std::map<std::string, std::string> series = {{"listener", "inbound"}, {"route", "orders"}};

  std::vector<std::pair<double, double>> buckets;  // (le, count) in exposition order
  for (const auto& s : e.samples) {
    if (s.name != "remora_request_duration_seconds_bucket") continue;
    auto labels = s.labels;
    REQUIRE(labels.count("le") == 1);
    double le = 0;
    REQUIRE(parse_value(labels["le"], le));
    labels.erase("le");
    if (labels == series) buckets.emplace_back(le, s.value);
  }
  REQUIRE(buckets.size() == DurationHistogram::kBounds.size() + 1);
  for (size_t i = 0; i < DurationHistogram::kBounds.size(); ++i)
    CHECK(buckets[i].first == doctest::Approx(DurationHistogram::kBounds[i]));
  CHECK(std::isinf(buckets.back().first));
  for (size_t i = 1; i < buckets.size(); ++i) {
    CHECK(buckets[i].first > buckets[i - 1].first);
    CHECK(buckets[i].second >= buckets[i - 1].second);
  }
  // Observed: 0.3 ms, 1 ms (on a bound: counted as le="0.001"), 200 ms, 3 s.
  auto at = [&](double le) {
    for (const auto& [bound, count] : buckets)
      if (bound == doctest::Approx(le)) return count;
    return -1.0;
  };
  CHECK(at(0.0005) == 1);
  CHECK(at(0.001) == 2);
  CHECK(at(0.1) == 2);
  CHECK(at(0.25) == 3);
  CHECK(at(2.5) == 3);
  CHECK(buckets.back().second == 4);
  CHECK(e.value("remora_request_duration_seconds_count", series) == 4);
  CHECK(e.value("remora_request_duration_seconds_count", series) == buckets.back().second);
  CHECK(e.value("remora_request_duration_seconds_sum", series) ==
        doctest::Approx(3.2013).epsilon(1e-5));
}

TEST_CASE("DurationHistogram: bucket edges are inclusive (le)") {
  DurationHistogram h;
  for (double bound : DurationHistogram::kBounds) h.observe(bound);
  h.observe(1000);
  auto counts = h.bucket_counts();
  for (size_t i = 0; i < counts.size(); ++i) CHECK_MESSAGE(counts[i] == 1, i);
  CHECK(h.count() == counts.size());
}

TEST_CASE("the same labels return the same series - different labels a different one") {
  Metrics m;
  auto& a = m.requests("l", "r", "c");
  CHECK(&m.requests("l", "r", "c") == &a);
  CHECK(&m.requests("l", "r", "c2") != &a);
  CHECK(&m.requests("l2", "r", "c") != &a);
  // No collision between label values that would concatenate alike.
  CHECK(&m.requests("l", "rc", "") != &m.requests("l", "r", "c"));
  auto& d = m.duration("l", "r");
  CHECK(&m.duration("l", "r") == &d);
  CHECK(&m.duration("l", "r2") != &d);
  auto& listener = m.listener("in");
  CHECK(&m.listener("in") == &listener);
  auto& cluster = m.cluster("c");
  CHECK(&m.cluster("c") == &cluster);

  // A series handed out before keeps counting into the same exported value
  // after it is asked for again (a config reload).
  a.count_status(Protocol::kHttp1, 200);
  m.requests("l", "r", "c").count_status(Protocol::kHttp1, 201);
  auto e = parse(m.render());
  CHECK(e.value("remora_requests_total",
                {{"listener", "l"}, {"route", "r"}, {"cluster", "c"}, {"protocol", "http1"}, {"status_class", "2xx"}}) == 2);
}

TEST_CASE("counters move by exactly what was added between two scrapes") {
  Metrics m;
  auto& s = m.requests("inbound", "r", "c");
  auto& l = m.listener("inbound");
  auto& c = m.cluster("c");
  auto value = [&](const std::string& name, const std::map<std::string, std::string>& labels) {
    return parse(m.render()).value(name, labels);
  };
  const std::map<std::string, std::string> ok = {
      {"listener", "inbound"}, {"route", "r"}, {"cluster", "c"}, {"protocol", "http1"}, {"status_class", "2xx"}};
  CHECK(value("remora_requests_total", ok) == 0);
  for (int i = 0; i < 5; ++i) s.count_status(Protocol::kHttp1, 200);
  s.count_status(Protocol::kHttp1, 299);
  CHECK(value("remora_requests_total", ok) == 6);
  s.count_status(Protocol::kHttp1, 99);   // not a status: counted nowhere
  s.count_status(Protocol::kHttp1, 600);
  auto e = parse(m.render());
  double total = 0;
  for (const auto& sample : e.samples)
    if (sample.name == "remora_requests_total") total += sample.value;
  CHECK(total == 6);

  CHECK(value("remora_downstream_rejected_total", {{"listener", "inbound"}, {"reason", "overloaded"}}) ==
        0);
  l.rejected_for("overloaded").add();
  l.rejected_for("overloaded").add();
  CHECK(value("remora_downstream_rejected_total", {{"listener", "inbound"}, {"reason", "overloaded"}}) ==
        2);
  // An unknown reason is counted as bad_request rather than lost.
  l.rejected_for("something_new").add();
  CHECK(value("remora_downstream_rejected_total", {{"listener", "inbound"}, {"reason", "bad_request"}}) ==
        1);

  c.connect_failures.add();
  CHECK(value("remora_upstream_connect_failures_total", {{"cluster", "c"}}) == 1);
  // Gauges go down as well as up.
  l.active_connections.add(4);
  l.active_connections.add(-3);
  CHECK(value("remora_downstream_connections_active", {{"listener", "inbound"}}) == 1);
  m.reloads_failed.add();
  CHECK(value("remora_config_reloads_total", {{"result", "failed"}}) == 1);
  CHECK(value("remora_config_reloads_total", {{"result", "ok"}}) == 0);
}

TEST_CASE("label values from the config are escaped - not broken") {
  Metrics m;
  // Route names are user-chosen text.
  m.requests("in", "say \"hi\"\\now\nnext", "c").count_status(Protocol::kHttp1, 500);
  auto text = m.render();
  INFO(text);
  auto e = parse(text);
  CHECK(joined(e.errors) == "");
  CHECK(e.value("remora_requests_total", {{"listener", "in"},
                                          {"route", "say \"hi\"\\now\nnext"},
                                          {"cluster", "c"},
                                          {"protocol", "http1"}, {"status_class", "5xx"}}) == 1);
}

TEST_CASE("a fresh Metrics renders valid text") {
  Metrics m;
  auto e = parse(m.render());
  CHECK(joined(e.errors) == "");
  CHECK(e.value("remora_config_reloads_total", {{"result", "ok"}}) == 0);
}
