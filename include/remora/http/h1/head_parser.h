#pragma once
// HTTP/1.1 message parsers on Beast's basic_parser that keep the head as views
// into the caller's contiguous read buffer (no per-field allocation) and let
// the body pass through untouched: the proxy forwards the framing bytes
// as received once the parser has checked them.
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/beast/http/basic_parser.hpp>

#include "remora/http/header_list.h"

namespace remora::http::h1 {

template <bool isRequest>
class HeadParser : public boost::beast::http::basic_parser<isRequest> {
 public:
  using error_code = boost::beast::error_code;
  using string_view = boost::beast::string_view;

  // `fields` is cleared and filled; it is the caller's so that its capacity
  // is reused from one message to the next.
  explicit HeadParser(HeaderList& fields) : headers(fields) { headers.clear(); }

  // Views into the buffer given to put(): valid while it is unchanged.
  std::string_view method;
  std::string_view target;
  std::string_view reason;
  unsigned status = 0;
  int version = 11;
  HeaderList& headers;
  // When set, body bytes are appended here with the framing removed (for a
  // peer that frames differently, e.g. HTTP/2); else they pass untouched.
  std::string* decoded_body = nullptr;

 private:
  void on_request_impl(boost::beast::http::verb, string_view method_str, string_view target_str,
                       int v, error_code&) override {
    method = method_str;
    target = target_str;
    version = v;
  }
  void on_response_impl(int code, string_view reason_str, int v, error_code&) override {
    status = static_cast<unsigned>(code);
    reason = reason_str;
    version = v;
  }
  void on_field_impl(boost::beast::http::field, string_view name, string_view value,
                     error_code&) override {
    headers.add(name, value);
  }
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>&, error_code&) override {}
  std::size_t on_body_impl(string_view body, error_code&) override {
    if (decoded_body) decoded_body->append(body.data(), body.size());
    return body.size();
  }
  void on_chunk_header_impl(std::uint64_t, string_view, error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, string_view body, error_code&) override {
    if (decoded_body) decoded_body->append(body.data(), body.size());
    return body.size();
  }
  void on_finish_impl(error_code&) override {}
};

using RequestHeadParser = HeadParser<true>;
using ResponseHeadParser = HeadParser<false>;

}  // namespace remora::http::h1
