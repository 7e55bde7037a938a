#pragma once
// The protocol client behind the scanner's and the restorer's interfaces: chunk uploads
// over a pool of connections, object fetches split over two.
#include <memory>
#include <string>

#include "libmirage/client/client.hpp"
#include "libmirage/materialize/restorer.hpp"
#include "libmirage/scan/scanner.hpp"

namespace mirage::endpoint {

using client::Client;
using client::ConnectionFactory;

/// Uploads through `client` and up to `max_connections` further connections from
/// `more`. An empty `device` uploads as an admin (layer captures).
std::unique_ptr<scan::ChunkSink> chunk_sink(Client& client, const std::string& device, ConnectionFactory more,
                                            size_t max_connections);
/// Fetches through `client`; large batches through two further connections from `more`.
std::unique_ptr<materialize::ObjectSource> object_source(Client& client, ConnectionFactory more);
/// Fetches through `client` alone, which it owns (a streaming fill's threads, each on a
/// connection of its own).
std::unique_ptr<materialize::ObjectSource> own_source(std::unique_ptr<Client> client);

}  // namespace mirage::endpoint
