using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using VirtioSharp.Devices;
using VirtioSharp.Memory;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;

namespace VirtioSharp.VhostUser.Backend;

/// <summary>
/// Listens on a Unix socket (bound here or inherited) and serves one front-end connection at a time (vhost-user is
/// one-to-one); when a connection ends — cleanly, by a protocol error, or because the front-end died — it resets the
/// device and waits for the next one, so QEMU's reconnect=1 finds it again.
/// </summary>
public sealed class VhostUserServer : IDisposable
{
    private readonly IVirtioDevice<DeviceMemory<TranslatorRef, RamPort>> _device;
    private readonly ILogger _log;
    private readonly Socket? _listener;
    private readonly SafeFd? _connectedFd;
    private volatile VhostUserBackend? _current;
    private volatile bool _stopping;
    private readonly EventFd _stopEvent = EventFd.Create();
    private readonly VhostUserBackendOptions _options;

    /// <summary>Listens on <paramref name="socketPath"/> (a stale socket file there is replaced).</summary>
    public VhostUserServer(string socketPath, IVirtioDevice<DeviceMemory<TranslatorRef, RamPort>> device, ILogger log, VhostUserBackendOptions? options = null)
    {
        _options = options ?? VhostUserBackendOptions.Default;
        _device = device;
        _log = Limit(log, _options);
        if (File.Exists(socketPath)) File.Delete(socketPath);
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        _listener.Listen(1);
        SocketPath = socketPath;
    }

    /// <summary>
    /// Serves the socket a manager handed over as <paramref name="fd"/> (vhost-user.rst --fd convention). A connected
    /// socket is served once; a listening one (socket activation) accepts front-ends one at a time like a socket path.
    /// Anything else throws <see cref="ArgumentException"/> saying what the descriptor is.
    /// </summary>
    public VhostUserServer(int fd, IVirtioDevice<DeviceMemory<TranslatorRef, RamPort>> device, ILogger log, VhostUserBackendOptions? options = null)
    {
        _options = options ?? VhostUserBackendOptions.Default;
        _device = device;
        _log = Limit(log, _options);
        if (InheritedSocket.IsListening(fd)) _listener = new Socket(new SafeSocketHandle(fd, ownsHandle: true));
        else _connectedFd = new SafeFd(fd);
    }

    private static ILogger Limit(ILogger log, VhostUserBackendOptions o) =>
        o.LogLinesPerSecond > 0 ? new RateLimitedLogger(log, o.LogLinesPerSecond, Math.Max(1, o.LogBurst)) : log;

    internal string? SocketPath { get; }
    /// <summary>Counters over every connection served.</summary>
    public VhostStats Stats { get; } = new();
    /// <summary>The back-end serving the current connection; null between connections.</summary>
    public VhostUserBackend? Current => _current;
    /// <summary>True when front-ends are accepted (a socket path or an inherited listening socket).</summary>
    public bool Listening => _listener is not null;

    /// <summary>Serves connections until <see cref="Stop"/> (or, with a connected --fd, until that connection ends).</summary>
    public void Run()
    {
        if (_connectedFd is not null)
        {
            Serve(new FdSocket(_connectedFd));
            return;
        }
        // Wait with poll, not in accept: closing an inherited descriptor does not unblock a thread in accept (.NET
        // only unblocks sockets it created close-on-exec), so Stop signals an eventfd instead.
        using var listenerFd = new SafeFd((int)_listener!.Handle, owns: false);
        while (!_stopping)
        {
            if (EventFd.WaitAny([listenerFd, _stopEvent.Handle], -1) != 0) return;
            if (_stopping) return;
            Socket conn;
            try { conn = _listener!.Accept(); }
            catch (SocketException) when (_stopping) { return; }
            catch (ObjectDisposedException) { return; }
            Serve(new FdSocket(conn));
        }
    }

    private void Serve(FdSocket sock)
    {
        Stats.Connections++;
        _log.LogInformation("front-end connected (connection {N})", Stats.Connections);
        var backend = new VhostUserBackend(sock, _device, _log, Stats, _options);
        _current = backend;
        try { backend.Run(); }
        catch (Exception e) { _log.LogError(e, "connection failed"); }
        finally
        {
            _current = null;
            var (hits, misses, updates, invalidations) = backend.IotlbCounters;
            Stats.IotlbHits += hits;
            Stats.IotlbMisses += misses;
            // The IOTLB counts per connection; the server's totals are their sum.
            Stats.IotlbUpdates += updates;
            Stats.IotlbInvalidations += invalidations;
            backend.Dispose();
            // Read after Dispose: the rings' last completions (drained as they stop) are logged too.
            var (dirty, beyond) = backend.DirtyLogCounters;
            Interlocked.Add(ref Stats.DirtyPages, dirty);
            Interlocked.Add(ref Stats.DirtyLogOutOfRange, beyond);
            Interlocked.Increment(ref Stats.ConnectionsEnded);
            _log.LogInformation("connection closed; device reset, waiting for the next front-end");
        }
    }

    /// <summary>Makes <see cref="Run"/> return: stops accepting and aborts the current connection.</summary>
    public void Stop()
    {
        _stopping = true;
        _stopEvent.Signal();
        _current?.Abort();
    }

    /// <summary>Stops, closes the socket and removes the socket file this server bound.</summary>
    public void Dispose()
    {
        Stop();
        _listener?.Dispose();
        _stopEvent.Dispose();
        if (SocketPath is not null && File.Exists(SocketPath)) File.Delete(SocketPath);
    }
}
