#pragma once
// Strict HTTP/1.1 request rules beyond what Beast's parser enforces: the
// inputs that request smuggling and header injection are made of. A request
// failing any of them is answered 400 and never forwarded.
#include <optional>
#include <string_view>

#include "remora/http/header_list.h"

namespace remora::http::h1 {

// On the raw head bytes: NUL, a bare CR or LF, obs-fold (a line starting with
// SP/HTAB), control characters other than HTAB (DEL included) anywhere.
bool raw_head_is_clean(std::string_view head);

// On the parsed fields: Content-Length and Transfer-Encoding together,
// differing Content-Lengths, a Transfer-Encoding other than a single
// "chunked", a missing or repeated Host on HTTP/1.1.
bool framing_is_unambiguous(const HeaderList& headers, int version);

}  // namespace remora::http::h1
