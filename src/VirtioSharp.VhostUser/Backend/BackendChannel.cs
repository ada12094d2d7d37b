using Microsoft.Extensions.Logging;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.VhostUser.Backend;

/// <summary>
/// The back-end's own requests to the front-end (SET_BACKEND_REQ_FD's socket): IOTLB misses and access failures, and
/// BACKEND_CONFIG_CHANGE_MSG when a device's config changes. Sends from ring workers and the message loop are
/// serialised; a channel that is not set simply drops them. No send waits longer than the timeout for a front-end
/// that does not read: the channel is then closed (half a message may be in it), and every later send fails at once.
/// </summary>
internal sealed class BackendChannel(ILogger log, int timeoutMs) : IDisposable
{
    private readonly object _lock = new();
    private FdSocket? _socket;

    public bool IsSet { get { lock (_lock) return _socket is not null; } }

    /// <summary>SET_BACKEND_REQ_FD: the new channel replaces the old one.</summary>
    public void Set(FdSocket socket)
    {
        lock (_lock)
        {
            _socket?.Dispose();
            _socket = socket;
        }
    }

    /// <summary>VHOST_USER_BACKEND_IOTLB_MSG of <paramref name="type"/> (MISS, ACCESS_FAIL); false if it could not be sent.</summary>
    public bool SendIotlb(byte type, ulong iova, byte perm)
    {
        log.LogDebug("IOTLB {Type} sent for iova 0x{Iova:x} perm {Perm}", type == IotlbMsgType.Miss ? "MISS" : "ACCESS_FAIL", iova, perm);
        Span<byte> m = stackalloc byte[VhostHeader.Length + IotlbMsgType.Length];
        m.Clear();
        new VhostHeader((uint)VhostBackendRequest.IotlbMsg, VhostHeader.Version, IotlbMsgType.Length).Write(m);
        new IotlbRequest(iova, 0, 0, perm, type).Write(m[VhostHeader.Length..]);
        // A miss is sent by a ring worker: if its ring is being stopped or paused while the front-end does not read
        // (QEMU's main loop waits for our reply to the message that pauses it), give the send up and keep the channel.
        return Send(m, type == IotlbMsgType.Miss ? static () => Vring.CurrentStopRequested : null);
    }

    /// <summary>BACKEND_CONFIG_CHANGE_MSG (no reply asked): the front-end re-reads the config with GET_CONFIG.</summary>
    public bool SendConfigChange()
    {
        Span<byte> m = stackalloc byte[VhostHeader.Length];
        new VhostHeader((uint)VhostBackendRequest.ConfigChangeMsg, VhostHeader.Version, 0).Write(m);
        return Send(m);
    }

    private bool Send(ReadOnlySpan<byte> m, Func<bool>? abandon = null)
    {
        lock (_lock)
        {
            if (_socket is null) return false;
            if (_socket.TrySend(m, default, timeoutMs, abandon, out string? error)) return true;
            if (error is null) return false;   // abandoned before any byte went out: the channel is intact
            log.LogError("back-end channel closed: {Reason}; requests that need it (IOTLB misses) now fail", error);
            _socket.Dispose();
            _socket = null;
            return false;
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _socket?.Dispose();
            _socket = null;
        }
    }
}
