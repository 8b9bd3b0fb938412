#include "yaml_document.h"

#include <sstream>

#include <yaml-cpp/eventhandler.h>

#include "text.h"
#include "yaml_to_proto.h"

namespace remora::config::detail {
namespace {

// Where each document's first node starts. Only positions are kept: this
// pass exists to count documents safely, not to build them.
class DocumentStarts : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> starts;

  void OnDocumentStart(const YAML::Mark&) override { pending_ = true; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { first(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { first(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    first(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    first(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    first(mark);
  }
  void OnMapEnd() override {}

 private:
  void first(const YAML::Mark& mark) {
    if (pending_) starts.push_back(mark);
    pending_ = false;
  }
  bool pending_ = false;
};

bool same_place(const YAML::Mark& a, const YAML::Mark& b) {
  return a.line == b.line && a.column == b.column;
}

// yaml-cpp's message for a tab in indentation ("illegal block entry") does
// not say what is wrong; the line itself does.
bool indented_with_tab(std::string_view text, int line) {
  if (line < 0) return false;
  std::size_t start = 0;
  for (int i = 0; i < line; ++i) {
    start = text.find('\n', start);
    if (start == std::string_view::npos) return false;
    ++start;
  }
  for (std::size_t i = start; i < text.size() && (text[i] == ' ' || text[i] == '\t'); ++i) {
    if (text[i] == '\t') return true;
  }
  return false;
}

Diagnostic syntax_error(const std::string& file, std::string_view text, const YAML::Mark& mark,
                        std::string message) {
  if (indented_with_tab(text, mark.line)) message += " (YAML does not allow tabs for indentation)";
  Position at = position_of(mark);
  return Diagnostic{file, at.line, at.column, "", "YAML syntax error: " + message};
}

}  // namespace

YamlDocument read_yaml_document(std::string_view text, const std::string& file) {
  YamlDocument out;
  std::string copy(text);
  try {
    out.root = YAML::Load(copy);

    // yaml-cpp 0.7 never consumes a token it cannot place at the start of
    // a document (a stray ","): it returns an empty document, and every
    // next one is the same empty document (YAML::LoadAll never returns,
    // yaml-cpp issue #1040). Walk at most three documents and treat one that
    // starts where the previous one did as the syntax error it is.
    std::istringstream in(copy);
    YAML::Parser parser(in);
    DocumentStarts documents;
    while (documents.starts.size() < 3 && parser.HandleNextDocument(documents)) {
      const auto& starts = documents.starts;
      if (starts.size() >= 2 && same_place(starts[starts.size() - 1], starts[starts.size() - 2])) {
        const YAML::Mark& at = starts.back();
        std::string what = at.pos >= 0 && static_cast<std::size_t>(at.pos) < copy.size()
                               ? quoted(std::string(1, copy[static_cast<std::size_t>(at.pos)]))
                               : "token";
        out.errors.push_back(syntax_error(file, text, at, "unexpected " + what));
        out.root = YAML::Node();
        out.syntax_ok = false;
        return out;
      }
    }
    // yaml-cpp also starts a new document where indentation goes wrong
    // ("- a" then "b: 1"), so a second document is more often a mistake
    // than intent.
    if (documents.starts.size() > 1) {
      Position at = position_of(documents.starts[1]);
      out.errors.push_back(Diagnostic{file, at.line, at.column, "",
                                      "a second YAML document starts here; remora reads one "
                                      "(check the indentation, or remove the '---')"});
    }
  } catch (const YAML::ParserException& e) {
    out.errors.push_back(syntax_error(file, text, e.mark, e.msg));
    out.root = YAML::Node();
    out.syntax_ok = false;
  }
  return out;
}

}  // namespace remora::config::detail
