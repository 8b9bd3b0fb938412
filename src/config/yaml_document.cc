#include "yaml_document.h"

#include <sstream>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/parser.h>

#include "text.h"

namespace remora::config::detail {
namespace {

// Builds the first document's tree from parse events, and notes where each
// document's first node starts (only positions: later documents are parsed
// to be counted, not built).
class TreeBuilder : public YAML::EventHandler {
 public:
  explicit TreeBuilder(std::deque<YamlNode>& nodes) : nodes_(nodes) {}

  std::vector<YAML::Mark> document_starts;
  const YamlNode* root = nullptr;  // the first document's

  void OnDocumentStart(const YAML::Mark&) override {
    ++documents_;
    awaiting_first_node_ = true;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    add(mark, anchor, YamlNode::Kind::kNull);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    note_start(mark);
    if (!building()) return;
    // The parser refuses an alias to an unknown anchor; a null keeps keys
    // and values paired should one ever get through.
    if (anchor < anchors_.size() && anchors_[anchor] != nullptr) {
      attach(anchors_[anchor]);
    } else {
      add(mark, YAML::NullAnchor, YamlNode::Kind::kNull);
    }
  }
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    if (YamlNode* node = add(mark, anchor, YamlNode::Kind::kScalar)) {
      node->scalar = value;
      // yaml-cpp tags plain scalars "?" and quoted ones "!".
      node->quoted = tag == "!";
    }
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    open(add(mark, anchor, YamlNode::Kind::kSequence));
  }
  void OnSequenceEnd() override { close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    open(add(mark, anchor, YamlNode::Kind::kMap));
  }
  void OnMapEnd() override { close(); }

 private:
  // A sequence or map whose end has not been seen; a map holds its key
  // until the value arrives.
  struct OpenCollection {
    YamlNode* node;
    const YamlNode* pending_key = nullptr;
  };

  bool building() const { return documents_ == 1; }

  void note_start(const YAML::Mark& mark) {
    if (awaiting_first_node_) document_starts.push_back(mark);
    awaiting_first_node_ = false;
  }

  // A new node of the first document, attached where it appears; nullptr
  // in later documents.
  YamlNode* add(const YAML::Mark& mark, YAML::anchor_t anchor, YamlNode::Kind kind) {
    note_start(mark);
    if (!building()) return nullptr;
    YamlNode& node = nodes_.emplace_back();
    node.kind = kind;
    node.position = position_of(mark);
    if (anchor != YAML::NullAnchor) {
      if (anchors_.size() <= anchor) anchors_.resize(anchor + 1);
      anchors_[anchor] = &node;
    }
    attach(&node);
    return &node;
  }

  void attach(const YamlNode* node) {
    if (open_.empty()) {
      root = node;
      return;
    }
    OpenCollection& parent = open_.back();
    if (parent.node->is_sequence()) {
      parent.node->items.push_back(node);
    } else if (parent.pending_key == nullptr) {
      parent.pending_key = node;
    } else {
      parent.node->entries.emplace_back(parent.pending_key, node);
      parent.pending_key = nullptr;
    }
  }

  void open(YamlNode* collection) {
    if (collection != nullptr) open_.push_back({collection});
  }
  void close() {
    if (building() && !open_.empty()) open_.pop_back();
  }

  std::deque<YamlNode>& nodes_;
  std::vector<OpenCollection> open_;
  std::vector<const YamlNode*> anchors_;  // by yaml-cpp's anchor number (from 1)
  int documents_ = 0;
  bool awaiting_first_node_ = false;
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
  try {
    std::istringstream in{std::string(text)};
    YAML::Parser parser(in);
    TreeBuilder builder(out.nodes);
    const std::vector<YAML::Mark>& starts = builder.document_starts;

    // yaml-cpp 0.7 never consumes a token it cannot place at the start of
    // a document (a stray ","): it returns an empty document, and every
    // next one is the same empty document (YAML::LoadAll never returns,
    // yaml-cpp issue #1040). Walk at most three documents and treat one that
    // starts where the previous one did as the syntax error it is.
    while (starts.size() < 3 && parser.HandleNextDocument(builder)) {
      if (starts.size() >= 2 && same_place(starts[starts.size() - 1], starts[starts.size() - 2])) {
        const YAML::Mark& at = starts.back();
        std::string what = at.pos >= 0 && static_cast<std::size_t>(at.pos) < text.size()
                               ? quoted(std::string(1, text[static_cast<std::size_t>(at.pos)]))
                               : "token";
        out.errors.push_back(syntax_error(file, text, at, "unexpected " + what));
        out.syntax_ok = false;
        return out;
      }
    }
    out.root = builder.root;
    // yaml-cpp also starts a new document where indentation goes wrong
    // ("- a" then "b: 1"), so a second document is more often a mistake
    // than intent.
    if (starts.size() > 1) {
      Position at = position_of(starts[1]);
      out.errors.push_back(Diagnostic{file, at.line, at.column, "",
                                      "a second YAML document starts here; remora reads one "
                                      "(check the indentation, or remove the '---')"});
    }
  } catch (const YAML::ParserException& e) {
    out.errors.push_back(syntax_error(file, text, e.mark, e.msg));
    out.root = nullptr;
    out.syntax_ok = false;
  }
  return out;
}

Position position_of(const YAML::Mark& mark) {
  // yaml-cpp counts from 0 and uses -1 for "no position".
  if (mark.line < 0 || mark.column < 0) return {};
  return {mark.line + 1, mark.column + 1};
}

}  // namespace remora::config::detail
