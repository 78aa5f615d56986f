// proto/wire.h: encoding Requests and Responses into frames, and mapping error codes.
// Generated Protobuf headers are included only by .cc files; callers that need message
// types include "proto/ring.pb.h" themselves.
#pragma once

#include <string>

#include "common/status.h"

namespace ring::pb {
class Request;
class Response;
enum ErrorCode : int;
}  // namespace ring::pb

namespace ring {

// Appends one frame (header + serialized message) to *out.
void AppendRequestFrame(const pb::Request& req, std::string* out);
void AppendResponseFrame(const pb::Response& resp, std::string* out);

// Status <-> wire. Unknown wire codes become Corruption naming the number.
Status StatusFromResponse(const pb::Response& resp);
void SetResponseStatus(const Status& s, pb::Response* resp);

// Human name of the request body, e.g. "get"; "unknown" if none is set.
const char* RequestKindName(const pb::Request& req);

}  // namespace ring
