#include "yaml_to_proto.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <unordered_map>
#include <variant>

#include <google/protobuf/descriptor.h>

#include "remora/config/duration.h"
#include "text.h"

namespace remora::config::detail {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// One parsed scalar, ready to be set on a singular field or appended to a list.
using ScalarValue = std::variant<std::int32_t, std::int64_t, std::uint32_t, std::uint64_t, double,
                                 float, bool, std::string, const EnumValueDescriptor*>;

// A quoted scalar is named as such: quoting is how a user says "this is
// text", so a quoted "4" is not accepted as a number.
std::string describe(const YamlNode& node) {
  switch (node.kind) {
    case YamlNode::Kind::kMap:
      return "a map";
    case YamlNode::Kind::kSequence:
      return "a list";
    case YamlNode::Kind::kScalar:
      return node.quoted ? "the quoted string " + quoted(node.scalar) : quoted(node.scalar);
    default:
      return "nothing";
  }
}

std::string lower(std::string text) {
  for (char& c : text) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return text;
}

std::vector<std::string> enum_names(const FieldDescriptor* field) {
  std::vector<std::string> names;
  const auto* type = field->enum_type();
  for (int i = 0; i < type->value_count(); ++i) names.push_back(lower(type->value(i)->name()));
  return names;
}

std::vector<std::string> field_names(const Descriptor* type) {
  std::vector<std::string> names;
  for (int i = 0; i < type->field_count(); ++i) names.push_back(type->field(i)->name());
  return names;
}

// What a field wants, for "expected ..., got ..." messages.
std::string expectation(const FieldDescriptor* field) {
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      return "a string";
    case FieldDescriptor::CPPTYPE_BOOL:
      return "true or false";
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
      return "an integer";
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64:
      return "a non-negative integer";
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT:
      return "a number";
    case FieldDescriptor::CPPTYPE_ENUM:
      return "one of " + join(enum_names(field));
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return "a map";
  }
  return "a value";
}

ScalarValue default_value(const FieldDescriptor* field) {
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return std::int32_t{0};
    case FieldDescriptor::CPPTYPE_INT64:
      return std::int64_t{0};
    case FieldDescriptor::CPPTYPE_UINT32:
      return std::uint32_t{0};
    case FieldDescriptor::CPPTYPE_UINT64:
      return std::uint64_t{0};
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return 0.0;
    case FieldDescriptor::CPPTYPE_FLOAT:
      return 0.0f;
    case FieldDescriptor::CPPTYPE_BOOL:
      return false;
    case FieldDescriptor::CPPTYPE_ENUM:
      return field->default_value_enum();
    default:
      return std::string();
  }
}

// Sets or appends a parsed scalar through reflection.
struct Store {
  Message& message;
  const FieldDescriptor* field;
  bool append;

  void operator()(std::int32_t v) const {
    append ? r()->AddInt32(&message, field, v) : r()->SetInt32(&message, field, v);
  }
  void operator()(std::int64_t v) const {
    append ? r()->AddInt64(&message, field, v) : r()->SetInt64(&message, field, v);
  }
  void operator()(std::uint32_t v) const {
    append ? r()->AddUInt32(&message, field, v) : r()->SetUInt32(&message, field, v);
  }
  void operator()(std::uint64_t v) const {
    append ? r()->AddUInt64(&message, field, v) : r()->SetUInt64(&message, field, v);
  }
  void operator()(double v) const {
    append ? r()->AddDouble(&message, field, v) : r()->SetDouble(&message, field, v);
  }
  void operator()(float v) const {
    append ? r()->AddFloat(&message, field, v) : r()->SetFloat(&message, field, v);
  }
  void operator()(bool v) const {
    append ? r()->AddBool(&message, field, v) : r()->SetBool(&message, field, v);
  }
  void operator()(const std::string& v) const {
    append ? r()->AddString(&message, field, v) : r()->SetString(&message, field, v);
  }
  void operator()(const EnumValueDescriptor* v) const {
    append ? r()->AddEnum(&message, field, v) : r()->SetEnum(&message, field, v);
  }
  const Reflection* r() const { return message.GetReflection(); }
};

class Walker {
 public:
  Walker(const std::string& file, YamlToProtoResult& out) : file_(file), out_(out) {}

  // `node` is a YAML map; each key names a field of `message`.
  void fill_fields(const YamlNode& node, Message& message, const std::string& path) {
    const Descriptor* type = message.GetDescriptor();
    // Where each key was first written: by field, and by name for keys that
    // name no field.
    std::vector<std::optional<Position>> field_set_at(static_cast<std::size_t>(type->field_count()));
    std::unordered_map<std::string, std::optional<Position>> unknown_set_at;
    for (const auto& [key, value] : node.entries) {
      Position key_at = key->position;
      if (!key->is_scalar()) {
        error(key_at, path, "expected a field name, got " + describe(*key));
        continue;
      }
      const std::string& name = key->scalar;
      const FieldDescriptor* field = type->FindFieldByName(name);
      // yaml-cpp keeps both copies of a repeated key; silently using one
      // would hide a mistake.
      std::optional<Position>& first = field != nullptr
                                           ? field_set_at[static_cast<std::size_t>(field->index())]
                                           : unknown_set_at[name];
      if (first) {
        error(key_at, path,
              "duplicate field " + quoted(name) + " (first set on line " +
                  std::to_string(first->line) + ")");
        continue;
      }
      first = key_at;
      if (field == nullptr) {
        error(key_at, path, "unknown field " + quoted(name) + unknown_hint(name, type));
        continue;
      }
      std::string child = field_path(path, name);
      record(child, *value, key_at);
      if (value->is_null()) continue;  // `key:` or `key: null` leaves the field unset
      fill_field(*value, message, field, child);
    }
  }

  // Fills a message-typed value: a map of fields, a duration string, or the
  // scalar shorthand for the message's first field. Returns false, having
  // reported why, when the node has the wrong shape.
  bool fill_message(const YamlNode& node, Message& message, const std::string& path) {
    const Descriptor* type = message.GetDescriptor();
    if (type->well_known_type() == Descriptor::WELLKNOWNTYPE_DURATION) {
      if (!node.is_scalar()) {
        error(node, path, "expected a duration such as 250ms or 2s, got " + describe(node));
        return false;
      }
      DurationResult parsed = parse_duration(node.scalar);
      if (!parsed.ok()) {
        error(node, path, parsed.error);
        return false;
      }
      message.CopyFrom(parsed.value);
      return true;
    }
    if (node.is_map()) {
      fill_fields(node, message, path);
      return true;
    }
    const FieldDescriptor* first = type->FindFieldByNumber(1);
    if (node.is_scalar() && first != nullptr && !first->is_repeated() &&
        first->type() == FieldDescriptor::TYPE_STRING) {
      // `api-version: "2"` means {exact: "2"}; `admin: 127.0.0.1:9901` means {address: ...}.
      std::string child = field_path(path, first->name());
      record(child, node, {});
      message.GetReflection()->SetString(&message, first, node.scalar);
      return true;
    }
    error(node, path, "expected a map, got " + describe(node));
    return false;
  }

 private:
  void fill_field(const YamlNode& value, Message& message, const FieldDescriptor* field,
                  const std::string& path) {
    if (field->is_map()) return fill_map_field(value, message, field, path);
    if (field->is_repeated()) return fill_list(value, message, field, path);
    const Reflection* reflection = message.GetReflection();
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      // Built aside so that a value of the wrong shape leaves the field unset.
      std::unique_ptr<Message> built(reflection->GetMessage(message, field).New());
      if (fill_message(value, *built, path)) {
        reflection->SetAllocatedMessage(&message, built.release(), field);
      }
      return;
    }
    if (auto parsed = parse_scalar(value, field, path)) {
      std::visit(Store{message, field, false}, *parsed);
    }
  }

  void fill_list(const YamlNode& value, Message& message, const FieldDescriptor* field,
                 const std::string& path) {
    if (!value.is_sequence()) {
      std::string why = "expected a list, got " + describe(value);
      if (value.is_scalar()) why += " (write [ " + value.scalar + " ] for a single item)";
      error(value, path, why);
      return;
    }
    Position list_at = value.position;
    std::size_t index = 0;
    for (const YamlNode* item_node : value.items) {
      const YamlNode& item = *item_node;
      std::string child = index_path(path, index++);
      record(child, item, list_at);
      // Every item is appended, even a bad one, so that indices in later
      // messages match the file.
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        Message* element = message.GetReflection()->AddMessage(&message, field);
        bool ok = false;
        if (item.is_null()) {
          error(list_at, child, "empty list item");
        } else {
          ok = fill_message(item, *element, child);
        }
        if (!ok) out_.placeholders.push_back(child);
        continue;
      }
      std::optional<ScalarValue> parsed;
      if (item.is_null()) {
        error(list_at, child, "empty list item");
      } else {
        parsed = parse_scalar(item, field, child);
      }
      std::visit(Store{message, field, true}, parsed ? *parsed : default_value(field));
    }
  }

  // map<K, V> fields: a YAML map of key → value.
  void fill_map_field(const YamlNode& value, Message& message, const FieldDescriptor* field,
                      const std::string& path) {
    if (!value.is_map()) {
      error(value, path, "expected a map, got " + describe(value));
      return;
    }
    const FieldDescriptor* key_field = field->message_type()->map_key();
    const FieldDescriptor* value_field = field->message_type()->map_value();
    const Reflection* reflection = message.GetReflection();
    std::unordered_map<std::string, Position> seen;
    for (const auto& [key_node, item_node] : value.entries) {
      const YamlNode& key = *key_node;
      const YamlNode& item = *item_node;
      Position key_at = key.position;
      if (!key.is_scalar()) {
        error(key_at, path, "expected a key, got " + describe(key));
        continue;
      }
      if (auto [first, inserted] = seen.emplace(key.scalar, key_at); !inserted) {
        error(key_at, path,
              "duplicate key " + quoted(key.scalar) + " (first set on line " +
                  std::to_string(first->second.line) + ")");
        continue;
      }
      std::string child = key_path(path, key.scalar);
      record(child, item, key_at);
      auto parsed_key = parse_scalar(key, key_field, child);
      if (!parsed_key) continue;

      Message* entry = reflection->AddMessage(&message, field);
      std::visit(Store{*entry, key_field, false}, *parsed_key);
      if (item.is_null()) continue;  // the value type's default
      bool ok = false;
      if (value_field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        Message* inner = entry->GetReflection()->MutableMessage(entry, value_field);
        ok = fill_message(item, *inner, child);
      } else if (auto parsed = parse_scalar(item, value_field, child)) {
        std::visit(Store{*entry, value_field, false}, *parsed);
        ok = true;
      }
      if (!ok) reflection->RemoveLast(&message, field);
    }
  }

  std::optional<ScalarValue> parse_scalar(const YamlNode& node, const FieldDescriptor* field,
                                          const std::string& path) {
    if (!node.is_scalar()) {
      std::string why = "expected " + expectation(field) + ", got " + describe(node);
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
        why += " (quote a value that starts with [ or {)";
      }
      error(node, path, why);
      return std::nullopt;
    }
    const std::string& text = node.scalar;
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_STRING:
        return text;
      case FieldDescriptor::CPPTYPE_ENUM:
        return parse_enum(node, field, path);
      default:
        break;
    }
    if (node.quoted) {
      error(node, path,
            "expected " + expectation(field) + ", got " + describe(node) + " (remove the quotes)");
      return std::nullopt;
    }
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_BOOL: {
        std::string folded = lower(text);
        if (folded == "true") return true;
        if (folded == "false") return false;
        break;
      }
      case FieldDescriptor::CPPTYPE_INT32:
        return parse_integer<std::int32_t>(node, field, path);
      case FieldDescriptor::CPPTYPE_INT64:
        return parse_integer<std::int64_t>(node, field, path);
      case FieldDescriptor::CPPTYPE_UINT32:
        return parse_integer<std::uint32_t>(node, field, path);
      case FieldDescriptor::CPPTYPE_UINT64:
        return parse_integer<std::uint64_t>(node, field, path);
      case FieldDescriptor::CPPTYPE_DOUBLE:
      case FieldDescriptor::CPPTYPE_FLOAT: {
        double value = 0;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (ec == std::errc() && end == text.data() + text.size() && std::isfinite(value)) {
          if (field->cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE) return value;
          return static_cast<float>(value);
        }
        break;
      }
      default:
        break;
    }
    error(node, path, "expected " + expectation(field) + ", got " + describe(node));
    return std::nullopt;
  }

  template <class T>
  std::optional<ScalarValue> parse_integer(const YamlNode& node, const FieldDescriptor* field,
                                           const std::string& path) {
    const std::string& text = node.scalar;
    T value{};
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    bool whole = end == text.data() + text.size();
    if (ec == std::errc() && whole) return value;
    if (ec == std::errc::result_out_of_range && whole) {
      error(node, path,
            text + " is out of range (" + std::to_string(std::numeric_limits<T>::min()) + ".." +
                std::to_string(std::numeric_limits<T>::max()) + ")");
    } else {
      error(node, path, "expected " + expectation(field) + ", got " + describe(node));
    }
    return std::nullopt;
  }

  std::optional<ScalarValue> parse_enum(const YamlNode& node, const FieldDescriptor* field,
                                        const std::string& path) {
    std::string folded = lower(node.scalar);
    const auto* type = field->enum_type();
    for (int i = 0; i < type->value_count(); ++i) {
      if (lower(type->value(i)->name()) == folded) return type->value(i);
    }
    std::vector<std::string> names = enum_names(field);
    error(node, path,
          "invalid value " + quoted(node.scalar) + did_you_mean(node.scalar, names) +
              ": expected one of " + join(names));
    return std::nullopt;
  }

  static std::string unknown_hint(const std::string& name, const Descriptor* type) {
    std::vector<std::string> names = field_names(type);
    std::string suggestion = did_you_mean(name, names);
    if (!suggestion.empty()) return suggestion;
    return " (expected one of " + join(names) + ")";
  }

  // Remembers where `path` was written; a null value has no useful mark of
  // its own (yaml-cpp gives the next token's), so its key stands in.
  void record(std::string_view path, const YamlNode& node, Position fallback) {
    Position at = node.is_null() ? fallback : node.position;
    if (at.line == 0) at = fallback;
    out_.positions.record(path, at);
  }

  void error(const YamlNode& node, const std::string& path, std::string message) {
    error(node.position, path, std::move(message));
  }

  void error(Position at, const std::string& path, std::string message) {
    out_.errors.push_back(Diagnostic{file_, at.line, at.column, path, std::move(message)});
  }

  const std::string& file_;
  YamlToProtoResult& out_;
};

}  // namespace

YamlToProtoResult yaml_to_proto(const YamlNode* root, Message& message, const std::string& file) {
  YamlToProtoResult out;
  Walker walker(file, out);
  if (root == nullptr || root->is_null()) return out;
  const YamlNode& node = *root;
  out.positions.record("", node.position);
  if (node.is_map()) {
    walker.fill_fields(node, message, "");
  } else {
    Position at = node.position;
    out.errors.push_back(Diagnostic{file, at.line, at.column, "",
                                    "expected a map of settings (listeners:, clusters:, ...) at "
                                    "the top level, got " +
                                        describe(node)});
  }
  return out;
}

}  // namespace remora::config::detail
