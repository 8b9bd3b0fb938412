#pragma once
// An ordered list of routes; the first that matches wins.
#include <string>
#include <vector>

#include "remora/router/route.h"
#include "remora/router/route_index.h"

namespace remora::router {

class RouteTable {
 public:
  std::string name;
  std::vector<Route> routes;

  // Indexes `routes` so that match() need not try them all (route_index.h).
  // Call once `routes` is complete, and again after any change to it; until
  // then (or once `routes` changed size) match() tries every route in order,
  // as it does for tables too small for an index to pay.
  void build_index();

  // nullptr when no route matches (→ 404 no_route).
  const Route* match(const RouteRequest& request) const;

 private:
  RouteIndex index_;
};

}  // namespace remora::router
