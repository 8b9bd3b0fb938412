#pragma once
// An ordered list of routes; the first that matches wins.
#include <string>
#include <vector>

#include "remora/router/route.h"

namespace remora::router {

class RouteTable {
 public:
  std::string name;
  std::vector<Route> routes;

  // nullptr when no route matches (→ 404 no_route).
  const Route* match(const RouteRequest& request) const;
};

}  // namespace remora::router
