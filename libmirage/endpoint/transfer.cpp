#include "libmirage/endpoint/transfer.hpp"

#include <atomic>
#include <future>

namespace mirage::endpoint {

using util::Digest;

namespace {

class ProtocolSink : public scan::ChunkSink {
 public:
  ProtocolSink(Client& client, std::string device, ConnectionFactory more, size_t max_connections)
      : m_device(std::move(device)), m_pool(client, std::move(more), max_connections) {}

  std::vector<bool> missing(std::span<const Digest> ids) override {
    client::ConnectionPool::Lease lease(m_pool);
    return client::chunks_missing(lease.client(), ids);
  }

  void put(std::vector<uint8_t> records) override {
    client::ConnectionPool::Lease lease(m_pool);
    client::chunks_put(lease.client(), m_device, std::move(records));
  }

 private:
  std::string m_device;
  client::ConnectionPool m_pool;
};

class ProtocolSource : public materialize::ObjectSource {
 public:
  ProtocolSource(Client& client, ConnectionFactory more) : m_client(client), m_pool(client, std::move(more), 2) {}

  /// Large batches are split over two extra connections (two server processes reading
  /// packs at once, while tree lookups keep the main one); small ones use the main one.
  std::vector<std::vector<uint8_t>> record_parts(std::span<const Digest> ids) override {
    std::vector<std::vector<uint8_t>> parts;
    if (ids.size() < 256) {
      parts.push_back(fetch(m_client, ids));
      return parts;
    }
    client::ConnectionPool::Lease a(m_pool), b(m_pool);
    size_t half = ids.size() / 2;
    auto first = std::async(std::launch::async, [&] { return fetch(a.client(), ids.first(half)); });
    auto second = fetch(b.client(), ids.subspan(half));
    parts.push_back(first.get());
    parts.push_back(std::move(second));
    return parts;
  }

  std::vector<uint8_t> records(std::span<const Digest> ids) override {
    auto parts = record_parts(ids);
    if (parts.size() == 1) return std::move(parts.front());
    size_t total = 0;
    for (const auto& p : parts) total += p.size();
    std::vector<uint8_t> out;
    out.reserve(total);
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
  }

  uint64_t bytes_received() const override { return m_received; }

  std::vector<uint8_t> deltas(std::span<const Digest> pairs) override {
    auto out = client::chunks_delta(m_client, pairs);
    m_received += out.size() + pairs.size() * 32;
    return out;
  }

 private:
  std::vector<uint8_t> fetch(Client& client, std::span<const Digest> ids) {
    auto out = client::chunks_get(client, ids);
    m_received += out.size() + ids.size() * 32;  // ids out, records back
    return out;
  }

  Client& m_client;
  client::ConnectionPool m_pool;
  std::atomic<uint64_t> m_received{0};
};

/// An object source over a connection of its own.
class OwnSource : public materialize::ObjectSource {
 public:
  explicit OwnSource(std::unique_ptr<Client> client)
      : m_client(std::move(client)), m_source(std::make_unique<ProtocolSource>(*m_client, nullptr)) {}
  std::vector<uint8_t> records(std::span<const Digest> ids) override { return m_source->records(ids); }
  std::vector<std::vector<uint8_t>> record_parts(std::span<const Digest> ids) override {
    return m_source->record_parts(ids);
  }
  uint64_t bytes_received() const override { return m_source->bytes_received(); }

 private:
  std::unique_ptr<Client> m_client;
  std::unique_ptr<materialize::ObjectSource> m_source;
};

}  // namespace

std::unique_ptr<materialize::ObjectSource> own_source(std::unique_ptr<Client> client) {
  return std::make_unique<OwnSource>(std::move(client));
}

std::unique_ptr<scan::ChunkSink> chunk_sink(Client& client, const std::string& device, ConnectionFactory more,
                                            size_t max_connections) {
  return std::make_unique<ProtocolSink>(client, device, std::move(more), max_connections);
}

std::unique_ptr<materialize::ObjectSource> object_source(Client& client, ConnectionFactory more) {
  return std::make_unique<ProtocolSource>(client, std::move(more));
}

}  // namespace mirage::endpoint
