#pragma once
// An index over a table's routes that finds the first route matching a
// request without trying every route. Routes are bucketed by host (exact
// host, "*.suffix", or neither), and within a bucket by path in a byte trie
// (exact paths and prefixes). A lookup gathers the few lists of routes that
// can apply to the request and tries them with matches() in ascending route
// order, so the answer is the linear scan's: the first route that matches.
// Built once per table; a lookup allocates nothing.
#include <bitset>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "remora/router/route.h"

namespace remora::router {

class RouteIndex {
 public:
  RouteIndex() = default;  // indexes nothing: covers() is false
  explicit RouteIndex(const std::vector<Route>& routes);

  // Whether this index was built for `routes` (checked by size only: the
  // index must be rebuilt whenever `routes` changes).
  bool covers(const std::vector<Route>& routes) const { return built_ && routes.size() == size_; }

  // The first of `routes` that matches, as `for (r : routes) if (matches(r))`.
  const Route* match(const std::vector<Route>& routes, const RouteRequest& request) const;

 private:
  // Route numbers by path: each node of the trie is a path prefix and lists
  // the routes whose `prefix` (or exact `path`) is that string, ascending.
  class PathTrie {
   public:
    PathTrie();
    void add_prefix(std::string_view prefix, uint32_t route);  // "" = any path
    void add_exact(std::string_view path, uint32_t route);
    // Calls visit(std::span<const uint32_t>) for every list that can match
    // `path` (without its query): the prefix lists along it, and the exact
    // list at its end. Defined in route.cc, the only user.
    template <class Visit>
    void lookup(std::string_view path, Visit&& visit) const;

   private:
    struct Edge {
      unsigned char byte;
      uint32_t child;
    };
    struct Node {
      std::vector<Edge> edges;  // sorted by byte
      std::vector<uint32_t> prefix_routes;
      std::vector<uint32_t> exact_routes;
    };
    Node& node_for(std::string_view path);
    const Node* child(const Node& node, unsigned char byte) const;
    std::vector<Node> nodes_;  // nodes_[0] is the root (the empty path)
  };

  // Host names, folded to ASCII lower case as http::iequals compares them →
  // their routes. A name longer than kMaxHost goes to any_host_ instead, so
  // that a request's host folds into a fixed buffer.
  static constexpr size_t kMaxHost = 255;
  struct HostHash {
    using is_transparent = void;
    size_t operator()(std::string_view host) const { return std::hash<std::string_view>{}(host); }
  };
  using HostMap = std::unordered_map<std::string, PathTrie, HostHash, std::equal_to<>>;

  PathTrie any_host_;       // routes without a host (or one the maps don't hold)
  HostMap exact_hosts_;     // "api.example.com" → its routes
  HostMap wildcard_hosts_;  // ".example.com" (from "*.example.com") → its routes
  std::bitset<kMaxHost + 1> exact_lengths_, wildcard_lengths_;  // of the names in each map
  size_t size_ = 0;
  bool built_ = false;
};

}  // namespace remora::router
