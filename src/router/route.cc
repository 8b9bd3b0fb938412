#include "remora/router/route.h"

#include <algorithm>
#include <array>
#include <limits>

#include "remora/router/route_index.h"
#include "remora/router/route_table.h"

namespace remora::router {
namespace {

std::string_view strip_port(std::string_view host) {
  if (!host.empty() && host.front() == '[') {  // [v6]:port
    auto end = host.find(']');
    return end == std::string_view::npos ? host : host.substr(0, end + 1);
  }
  auto colon = host.rfind(':');
  return colon == std::string_view::npos ? host : host.substr(0, colon);
}

bool ends_with_icase(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() &&
         http::iequals(text.substr(text.size() - suffix.size()), suffix);
}

bool host_matches(const Route& route, std::string_view request_host) {
  if (route.host.empty()) return true;
  auto host = strip_port(request_host);
  if (!route.host_wildcard) return http::iequals(host, route.host);
  // "*.example.com" is stored as ".example.com": needs at least one label before it.
  return host.size() > route.host.size() && ends_with_icase(host, route.host);
}

bool header_matches(const HeaderMatcher& matcher, const http::HeaderList& headers) {
  const auto* field = headers.find(matcher.name);
  switch (matcher.kind) {
    case HeaderMatcher::Kind::kPresent:
      return field != nullptr;
    case HeaderMatcher::Kind::kExact:
      return field != nullptr && field->value == matcher.value;
    case HeaderMatcher::Kind::kRegex:
      return field != nullptr &&
             std::regex_match(field->value.begin(), field->value.end(), matcher.regex);
  }
  return false;
}

}  // namespace

const RouteTarget& Route::pick_target(uint32_t random) const {
  for (const auto& target : targets) {
    if (random < target.weight) return target;
    random -= target.weight;
  }
  return targets.back();
}

bool matches(const Route& route, const RouteRequest& request) {
  auto path = request.path.substr(0, request.path.find('?'));
  if (!route.path.empty() && path != route.path) return false;
  if (!route.prefix.empty() && !path.starts_with(route.prefix)) return false;
  if (!host_matches(route, request.host)) return false;
  for (const auto& matcher : route.headers)
    if (!header_matches(matcher, request.headers)) return false;
  return true;
}

// Below this many routes, trying each in order (~15 ns a route) costs less
// than an index lookup (~100-300 ns, bench/micro/router_bench.cc).
constexpr size_t kIndexFrom = 16;

void RouteTable::build_index() {
  index_ = routes.size() >= kIndexFrom ? RouteIndex(routes) : RouteIndex();
}

const Route* RouteTable::match(const RouteRequest& request) const {
  if (index_.covers(routes)) return index_.match(routes, request);
  for (const auto& route : routes)
    if (matches(route, request)) return &route;
  return nullptr;
}

// --- RouteIndex ---

namespace {

// ASCII case folding, as http::iequals compares.
unsigned char fold(unsigned char c) { return c >= 'A' && c <= 'Z' ? c | 0x20 : c; }

std::string folded(std::string_view text) {
  std::string out(text);
  for (auto& c : out) c = static_cast<char>(fold(static_cast<unsigned char>(c)));
  return out;
}

// Tries the routes of a few ascending lists of route numbers in ascending
// order and keeps the lowest that matches. It holds up to kLists lists at a
// time; should more come, those it holds are tried first and later ones only
// below the best found so far, which gives the same answer. No allocation:
// the lists are the index's own.
class FirstMatch {
 public:
  FirstMatch(const std::vector<Route>& routes, const RouteRequest& request)
      : routes_(routes), request_(request) {}

  void add(std::span<const uint32_t> list) {
    if (list.empty() || list.front() >= best_) return;
    if (count_ == lists_.size()) try_lists();
    lists_[count_++] = {list.data(), list.data() + list.size()};
  }

  const Route* result() {
    try_lists();
    return best_ == kNone ? nullptr : &routes_[best_];
  }

 private:
  static constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();

  struct List {
    const uint32_t* next;
    const uint32_t* end;
  };

  // Merges the lists held: the lowest route number first, until one matches.
  void try_lists() {
    for (;;) {
      List* lowest = nullptr;
      for (size_t i = 0; i < count_; ++i) {
        List& list = lists_[i];
        if (list.next != list.end && *list.next < best_ && (!lowest || *list.next < *lowest->next))
          lowest = &list;
      }
      if (!lowest) break;
      uint32_t route = *lowest->next++;
      if (matches(routes_[route], request_)) {
        best_ = route;  // lower than every route left in the lists
        break;
      }
    }
    count_ = 0;
  }

  const std::vector<Route>& routes_;
  const RouteRequest& request_;
  static constexpr size_t kLists = 16;
  std::array<List, kLists> lists_;  // [0, count_) are set; not zeroed: this is per request
  size_t count_ = 0;
  uint32_t best_ = kNone;
};

}  // namespace

RouteIndex::PathTrie::PathTrie() : nodes_(1) {}

RouteIndex::PathTrie::Node& RouteIndex::PathTrie::node_for(std::string_view path) {
  uint32_t at = 0;
  for (char c : path) {
    auto byte = static_cast<unsigned char>(c);
    auto& edges = nodes_[at].edges;
    auto edge = std::lower_bound(edges.begin(), edges.end(), byte,
                                 [](const Edge& e, unsigned char b) { return e.byte < b; });
    if (edge != edges.end() && edge->byte == byte) {
      at = edge->child;
      continue;
    }
    at = static_cast<uint32_t>(nodes_.size());
    edges.insert(edge, Edge{byte, at});
    nodes_.emplace_back();  // `edges` is not used past this point
  }
  return nodes_[at];
}

const RouteIndex::PathTrie::Node* RouteIndex::PathTrie::child(const Node& node,
                                                              unsigned char byte) const {
  auto edge = std::lower_bound(node.edges.begin(), node.edges.end(), byte,
                               [](const Edge& e, unsigned char b) { return e.byte < b; });
  return edge != node.edges.end() && edge->byte == byte ? &nodes_[edge->child] : nullptr;
}

void RouteIndex::PathTrie::add_prefix(std::string_view prefix, uint32_t route) {
  node_for(prefix).prefix_routes.push_back(route);
}

void RouteIndex::PathTrie::add_exact(std::string_view path, uint32_t route) {
  node_for(path).exact_routes.push_back(route);
}

template <class Visit>
void RouteIndex::PathTrie::lookup(std::string_view path, Visit&& visit) const {
  const Node* node = &nodes_[0];
  for (size_t i = 0;; ++i) {
    visit(std::span<const uint32_t>(node->prefix_routes));
    if (i == path.size()) {
      visit(std::span<const uint32_t>(node->exact_routes));
      return;
    }
    node = child(*node, static_cast<unsigned char>(path[i]));
    if (!node) return;
  }
}

RouteIndex::RouteIndex(const std::vector<Route>& routes) : size_(routes.size()), built_(true) {
  for (uint32_t i = 0; i < routes.size(); ++i) {
    const Route& route = routes[i];
    const auto& host = route.host;
    PathTrie* trie = &any_host_;
    if (host.empty() || host.size() > kMaxHost) {
      // any host, or one too long to look up: matches() decides
    } else if (!route.host_wildcard) {
      trie = &exact_hosts_[folded(host)];
      exact_lengths_.set(host.size());
    } else if (host.front() == '.') {
      trie = &wildcard_hosts_[folded(host)];
      wildcard_lengths_.set(host.size());
    }  // else a suffix that need not start a label: matches() decides
    // A route with both a path and a prefix is filed by path; matches() checks the prefix.
    if (!route.path.empty())
      trie->add_exact(route.path, i);
    else
      trie->add_prefix(route.prefix, i);
  }
}

const Route* RouteIndex::match(const std::vector<Route>& routes,
                               const RouteRequest& request) const {
  auto path = request.path.substr(0, request.path.find('?'));
  FirstMatch first(routes, request);
  auto add = [&first](std::span<const uint32_t> list) { first.add(list); };
  any_host_.lookup(path, add);
  if (exact_hosts_.empty() && wildcard_hosts_.empty()) return first.result();

  // The request host in lower case - as much of its end as a name in the maps
  // can be long.
  auto host = strip_port(request.host);
  std::array<char, kMaxHost> buffer;
  size_t length = std::min(host.size(), buffer.size());
  std::transform(host.end() - length, host.end(), buffer.begin(),
                 [](char c) { return static_cast<char>(fold(static_cast<unsigned char>(c))); });
  std::string_view lower(buffer.data(), length);

  if (lower.size() == host.size() && exact_lengths_.test(host.size()))
    if (auto it = exact_hosts_.find(lower); it != exact_hosts_.end()) it->second.lookup(path, add);
  // ".example.com" takes a host that ends with it and has at least one byte
  // before it: try the host's end from each '.' but a leading one.
  for (auto dot = lower.find('.', lower.size() == host.size() ? 1 : 0);
       dot != std::string_view::npos; dot = lower.find('.', dot + 1)) {
    auto suffix = lower.substr(dot);
    if (!wildcard_lengths_.test(suffix.size())) continue;
    if (auto it = wildcard_hosts_.find(suffix); it != wildcard_hosts_.end())
      it->second.lookup(path, add);
  }
  return first.result();
}

}  // namespace remora::router
