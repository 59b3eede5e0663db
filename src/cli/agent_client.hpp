// The agent as the CLI reaches it, for command files other than agent_commands.cpp (which
// defines these): a client of the running agent, and one call that returns the reply's body.
#pragma once

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "api/client.hpp"

namespace mup::cli {

// A client of the agent of `root`; when none answers, die()s saying how to start one.
api::Client agent_client(const std::filesystem::path& root);
// The body of a successful reply; otherwise die()s with the API's error (as JSON too under
// --json).
nlohmann::json agent_call(api::Client& c, const std::string& method, const std::string& path,
                          const nlohmann::json& body = nullptr,
                          std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace mup::cli
