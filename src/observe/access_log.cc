#include "remora/observe/access_log.h"

#include <spdlog/async.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <ctime>

namespace remora::observe {
namespace {

std::atomic<int> logger_serial{0};

void append_json_string(fmt::memory_buffer& out, std::string_view s) {
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out.append(std::string_view("\\\"")); break;
      case '\\': out.append(std::string_view("\\\\")); break;
      default:
        if (c < 0x20) fmt::format_to(std::back_inserter(out), "\\u{:04x}", c);
        else out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
}

// "2026-11-26T11:07:02.123Z"
void append_utc_time(fmt::memory_buffer& out) {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm tm;
  gmtime_r(&seconds, &tm);
  char text[32];
  size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm);
  fmt::format_to(std::back_inserter(out), "{}.{:03d}Z", std::string_view(text, n),
                 static_cast<int>(ms % 1000));
}

std::string_view or_dash(std::string_view s) { return s.empty() ? std::string_view("-") : s; }

}  // namespace

AccessLog::AccessLog(const std::string& path, bool json) : path_(path), json_(json) {
  if (!spdlog::thread_pool()) spdlog::init_thread_pool(8192, 1);
  auto name = "access" + std::to_string(logger_serial++);
  if (path == "stdout")
    logger_ = spdlog::create_async<spdlog::sinks::stdout_sink_mt>(name);
  else if (path == "stderr")
    logger_ = spdlog::create_async<spdlog::sinks::stderr_sink_mt>(name);
  else
    logger_ = spdlog::create_async<spdlog::sinks::basic_file_sink_mt>(name, path);
  logger_->set_pattern("%v");
  logger_->flush_on(spdlog::level::info);
}

AccessLog::~AccessLog() {
  logger_->flush();
  spdlog::drop(logger_->name());
}

void AccessLog::write(const AccessRecord& r) {
  fmt::memory_buffer out;
  if (json_) {
    out.append(std::string_view("{\"time\":\""));
    append_utc_time(out);
    out.push_back('"');
    auto field = [&](std::string_view name, std::string_view value) {
      fmt::format_to(std::back_inserter(out), ",\"{}\":", name);
      append_json_string(out, value);
    };
    field("listener", r.listener);
    field("route", r.route);
    field("method", r.method);
    field("authority", r.authority);
    field("path", r.path);
    fmt::format_to(std::back_inserter(out),
                   ",\"status\":{},\"duration_ms\":{:.3f},\"bytes_in\":{},\"bytes_out\":{}",
                   r.status, r.duration_ms, r.bytes_in, r.bytes_out);
    field("upstream", r.upstream);
    field("request_id", r.request_id);
    field("reason", r.reason);
    out.push_back('}');
  } else {
    append_utc_time(out);
    fmt::format_to(std::back_inserter(out), " {} {} {} {} {} {:.3f}ms {} {} {} {} {} {}", r.listener,
                   or_dash(r.route), r.method, or_dash(r.authority), r.path, r.duration_ms,
                   r.status, r.bytes_in, r.bytes_out, or_dash(r.upstream), or_dash(r.request_id),
                   or_dash(r.reason));
  }
  logger_->info(std::string_view(out.data(), out.size()));
}

}  // namespace remora::observe
