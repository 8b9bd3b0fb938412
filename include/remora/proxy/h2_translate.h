#pragma once
// Header translation toward HTTP/2 peers (RFC 9113 §8.2): lower-case names,
// no connection-specific fields, pseudo-headers first.
#include <nghttp2/nghttp2.h>

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "remora/http/header_list.h"
#include "remora/http/header_mutation.h"
#include "remora/upstream/h2_client.h"

namespace remora::proxy {

class WorkerContext;

std::string lower_case(std::string_view s);

// Fields that are about one connection and never cross a proxy; `te` passes
// only as "trailers", which gRPC needs.
bool connection_specific(std::string_view name, std::string_view value);

// A field that does not cross this hop: connection-specific, or one the
// route removes.
bool stays_behind(std::string_view name, std::string_view value,
                  const http::HeaderMutation& mutation);

// A header block for nghttp2: the list it reads (nghttp2_nv), pointing into
// an arena that holds every byte copied in. List and arena are one
// allocation, sized once up front (so views into it stay valid), and the
// block is neither copied nor moved.
// Its fields are flagged NO_COPY: nghttp2 reads them in place when it
// serializes the HEADERS frame, so the block must outlive its stream (or
// the frame going out), not just the submit call.
class H2HeaderBlock {
 public:
  H2HeaderBlock() = default;
  H2HeaderBlock(const H2HeaderBlock&) = delete;
  H2HeaderBlock& operator=(const H2HeaderBlock&) = delete;

  // Once, before anything is kept or added: room for `bytes` bytes and
  // `fields` fields.
  void reserve(size_t bytes, size_t fields);
  // Copies `bytes` into the arena (ASCII upper case lowered if `lower`).
  std::string_view keep(std::string_view bytes, bool lower = false);
  // Appends a field whose bytes live as long as the block (kept, or
  // literals); a name must be lower case already.
  void add(std::string_view name, std::string_view value);
  std::span<const nghttp2_nv> fields() const { return {nva_, count_}; }
  nghttp2_nv& field(size_t index) { return nva_[index]; }
  // The first value of `name` (lower case), or nullopt.
  std::optional<std::string_view> value(std::string_view name) const {
    return upstream::nva_value(fields(), name);
  }

 private:
  std::unique_ptr<nghttp2_nv[]> storage_;  // the list, then the arena's bytes
  nghttp2_nv* nva_ = nullptr;
  size_t count_ = 0;
  size_t room_ = 0;  // fields
  char* arena_ = nullptr;
  size_t used_ = 0;
  size_t capacity_ = 0;  // bytes
};

// The header block an HTTP/2 upstream gets for one request, from a request of
// either protocol: names lower-cased, connection-specific fields and the
// route's removals left out, x-forwarded-for appended, x-forwarded-proto and
// x-request-id kept if sent and set if not, the route's additions last.
// Built once per request and submitted on every try (the fields it came from
// may be gone by the next try: its bytes are its own). Each try's stream
// holds it (H2ClientStream::request_head): nghttp2 does not copy it.
class H2RequestHead {
 public:
  H2RequestHead(std::string_view method, std::string_view authority, std::string_view path,
                const http::HeaderList& fields, const http::HeaderMutation& mutation,
                std::string_view client_ip, WorkerContext& worker);

  // x-remora-attempt: added by the first call, rewritten by the next ones
  // (its value is the one field nghttp2 copies: an earlier try's HEADERS
  // may still be queued when it changes).
  void set_attempt(unsigned number);
  std::span<const nghttp2_nv> fields() const { return block_.fields(); }
  std::optional<std::string_view> value(std::string_view name) const {
    return block_.value(name);
  }

 private:
  H2HeaderBlock block_;
  char attempt_[12] = {};
  size_t attempt_index_ = 0;  // 0: none yet (index 0 is :method)
};

// The header block an HTTP/2 client gets for an HTTP/1.1 upstream's response
// head: :status first, names lower-cased, connection-specific fields and the
// route's removals left out, the route's additions last. Copied from the
// parser's views into `out` (empty), so the read buffer may move on.
void h2_response_head(H2HeaderBlock& out, unsigned status, const http::HeaderList& fields,
                      const http::HeaderMutation& mutation);

// A response's fields for the other side: lower-case names, no
// connection-specific fields, route mutations applied. Done in place on
// `fields` (move them in: no copy of a field).
upstream::Fields h2_response(upstream::Fields fields, const http::HeaderMutation& mutation);

}  // namespace remora::proxy
