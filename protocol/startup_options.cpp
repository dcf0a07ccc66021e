#include "protocol/startup_options.hpp"

namespace sluice::protocol {
namespace {

std::vector<std::string> split_words(std::string_view s) {
  std::vector<std::string> words;
  std::string cur;
  bool in_word = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '\\' && i + 1 < s.size()) {
      cur += s[++i];
      in_word = true;
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (in_word) words.push_back(std::move(cur));
      cur.clear();
      in_word = false;
    } else {
      cur += c;
      in_word = true;
    }
  }
  if (in_word) words.push_back(std::move(cur));
  return words;
}

std::optional<std::pair<std::string, std::string>> split_setting(std::string_view item) {
  auto eq = item.find('=');
  if (eq == std::string_view::npos || eq == 0) return std::nullopt;
  std::string name(item.substr(0, eq));
  for (char& c : name) {
    if (c == '-') c = '_';  // --enable-seqscan=off means enable_seqscan
  }
  return std::make_pair(std::move(name), std::string(item.substr(eq + 1)));
}

}  // namespace

std::optional<std::vector<std::pair<std::string, std::string>>> parse_startup_options(
    std::string_view options) {
  std::vector<std::pair<std::string, std::string>> out;
  auto words = split_words(options);
  for (std::size_t i = 0; i < words.size(); ++i) {
    std::string_view w = words[i];
    std::optional<std::pair<std::string, std::string>> setting;
    if (w == "-c") {
      if (i + 1 >= words.size()) return std::nullopt;
      setting = split_setting(words[++i]);
    } else if (w.starts_with("-c")) {
      setting = split_setting(w.substr(2));
    } else if (w.starts_with("--")) {
      setting = split_setting(w.substr(2));
    }
    if (!setting) return std::nullopt;
    out.push_back(std::move(*setting));
  }
  return out;
}

}  // namespace sluice::protocol
