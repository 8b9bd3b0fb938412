#pragma once
// Serializes the heads remora sends: the request to the upstream and the
// response to the client. Appends to a caller-owned string whose capacity is
// reused from message to message. Hop-by-hop fields are dropped here, in one
// place: Connection and every field it names, Keep-Alive, Proxy-Connection,
// TE, Upgrade, Transfer-Encoding (re-framed by the writer), Trailer.
#include <string>
#include <string_view>

#include "remora/http/header_list.h"
#include "remora/http/header_mutation.h"

namespace remora::http::h1 {

bool is_hop_by_hop(std::string_view name);

// Appends "name: value\r\n".
void append_field(std::string& out, std::string_view name, std::string_view value);

struct RequestHeadOut {
  std::string_view method;
  std::string_view target_prefix;  // written before target_rest (a rewritten prefix)
  std::string_view target_rest;
  const HeaderList* headers = nullptr;
  const HeaderMutation* mutation = nullptr;
  std::string_view client_address;   // appended to x-forwarded-for
  std::string_view forwarded_proto;  // "http" / "https"
  std::string_view new_request_id;   // set when the client sent none
  std::string_view upgrade;          // non-empty: pass this Upgrade through
  bool chunked = false;              // body is chunked (passed through as is)
  bool drop_expect = false;          // remora answered 100-continue itself
};

void write_request_head(std::string& out, const RequestHeadOut& head);

struct ResponseHeadOut {
  unsigned status = 200;
  std::string_view reason;
  const HeaderList* headers = nullptr;
  const HeaderMutation* mutation = nullptr;
  std::string_view upgrade;  // a 101: the protocol switched to
  bool chunked = false;
  bool close = false;        // tell the client this connection ends
};

void write_response_head(std::string& out, const ResponseHeadOut& head);

// A complete local reply (DESIGN §5) with a short text body.
void write_local_reply(std::string& out, unsigned status, std::string_view status_text,
                       std::string_view reason, bool close);

}  // namespace remora::http::h1
