using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using VirtioSharp.Devices.Block;

namespace VirtioSharp.Storage.Nbd;

/// <summary>
/// A virtio-blk disk served by an NBD server (qemu-nbd, nbdkit, nbd-server) over TCP or a Unix socket. Opening it
/// connects and negotiates (fixed newstyle, structured replies, NBD_OPT_GO with block size constraints) and fails
/// with an <see cref="IOException"/> that says why; afterwards a lost connection is re-established in the
/// background and requests in flight are re-sent, so a server restart within
/// <see cref="NbdStorageOptions.ReconnectTimeout"/> fails nothing.
/// </summary>
/// <remarks>
/// Queues share one connection unless <see cref="NbdStorageOptions.MultiConn"/> is set and the server advertises
/// NBD_FLAG_CAN_MULTI_CONN; then each queue after the first opens its own. Dispose after the queues are drained:
/// it sends NBD_CMD_DISC and returns once no thread of the storage can touch request memory.
/// </remarks>
public sealed class NbdStorage : IBlockStorage
{
    private readonly NbdStorageOptions _o;
    private readonly ILogger _log;
    private readonly NbdCounters _counters = new();
    private readonly NbdExport _export;
    private readonly uint _partLimit;
    private readonly NbdConnection _primary;
    private readonly List<NbdConnection> _extra = [];
    private readonly object _lock = new();
    private bool _disposed;

    /// <summary>Connects to the server <paramref name="options"/> name and negotiates the export.</summary>
    /// <exception cref="IOException">The server cannot be reached, has no such export, or breaks the protocol.</exception>
    public NbdStorage(NbdStorageOptions options, ILogger? log = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Host == null && options.UnixSocketPath == null)
            throw new ArgumentException("NbdStorageOptions needs a Host or a UnixSocketPath", nameof(options));
        _o = options;
        _log = log ?? NullLogger.Instance;
        var socket = OpenFirst(out _export);
        _partLimit = _export.PayloadLimit(_o.MaxPayload);
        Info = BuildInfo();
        _primary = new NbdConnection("nbd#0", _o, _export, _partLimit, socket, _export, false, _counters, _log);
        _log.LogInformation("nbd: {Description}", Info.Description);
    }

    /// <summary>Opens the export at <paramref name="uri"/> (see <see cref="NbdStorageOptions.Parse"/>) with default options.</summary>
    public static NbdStorage Open(string uri, ILogger? log = null) => new(NbdStorageOptions.Parse(uri), log);

    /// <inheritdoc/>
    public BlockStorageInfo Info { get; }

    /// <summary>The options the storage was opened with.</summary>
    public NbdStorageOptions Options => _o;

    /// <summary>Queues get a connection each (the option asked for it and the server allows it).</summary>
    public bool MultiConn => _o.MultiConn && _export.Has(NbdProtocol.TxCanMultiConn);

    /// <summary>Whether the server negotiated structured replies.</summary>
    public bool StructuredReplies => _export.Structured;

    /// <summary>The largest read/write payload one NBD command carries; larger requests are split.</summary>
    public uint MaxCommandPayload => _partLimit;

    /// <summary>Counters since opening.</summary>
    public NbdStats Stats => _counters.Snapshot();

    private System.Net.Sockets.Socket OpenFirst(out NbdExport export)
    {
        string where = _o.Describe();
        System.Net.Sockets.Socket s;
        try { s = NbdSocket.Connect(_o, CancellationToken.None); }
        catch (Exception e) when (e is System.Net.Sockets.SocketException or IOException or TimeoutException)
        {
            throw new IOException($"nbd: cannot connect to {where}: {e.Message}", e);
        }
        try
        {
            export = NbdHandshake.Negotiate(s, _o, CancellationToken.None);
        }
        catch (Exception e) when (e is System.Net.Sockets.SocketException or IOException or TimeoutException)
        {
            s.Dispose();
            throw new IOException($"nbd: handshake with {where} failed: {e.Message}", e);
        }
        if (export.Size < export.Alignment)
        {
            s.Dispose();
            throw new IOException($"nbd: export at {where} has {export.Size} bytes, less than one {export.Alignment}-byte block");
        }
        return s;
    }

    private BlockStorageInfo BuildInfo()
    {
        var e = _export;
        bool ro = _o.ReadOnly || e.Has(NbdProtocol.TxReadOnly);
        uint logical = e.Alignment;
        uint physical = e.BlockSizeAdvertised && e.PreferredBlock > logical ? e.PreferredBlock : 0;
        var features = new List<string>();
        if (e.Structured) features.Add("structured replies");
        if (e.Has(NbdProtocol.TxSendFlush)) features.Add("flush");
        if (e.Has(NbdProtocol.TxSendFua)) features.Add("fua");
        if (e.Has(NbdProtocol.TxSendTrim)) features.Add("trim");
        if (e.Has(NbdProtocol.TxSendWriteZeroes)) features.Add("write-zeroes");
        if (e.Has(NbdProtocol.TxCanMultiConn)) features.Add(MultiConn ? "multi-conn (used)" : "multi-conn");
        if (ro) features.Add("read-only");
        string sizes = e.BlockSizeAdvertised ? $"block {e.MinimumBlock}/{e.PreferredBlock}/{e.MaximumPayload}" : "default block sizes";
        return new BlockStorageInfo
        {
            // The last partial block (if the size is not a multiple of the minimum block) cannot be addressed.
            Size = e.Size / logical * logical,
            ReadOnly = ro,
            LogicalBlockSize = logical,
            PhysicalBlockSize = physical,
            SupportsDiscard = !ro && e.Has(NbdProtocol.TxSendTrim),
            SupportsWriteZeroes = !ro && e.Has(NbdProtocol.TxSendWriteZeroes),
            // Without NO_HOLE the server may trim to zero ("NBD_CMD_WRITE_ZEROES").
            WriteZeroesMayUnmap = !ro && e.Has(NbdProtocol.TxSendWriteZeroes),
            DiscardAlignment = e.BlockSizeAdvertised && e.PreferredBlock > logical ? e.PreferredBlock : 0,
            // Only a server that exposes NBD_CMD_FLUSH can be asked to persist; without it there is nothing to flush.
            VolatileCache = e.Has(NbdProtocol.TxSendFlush),
            Description = $"{_o.Describe()}, {e.Size} bytes, {sizes}, {string.Join(", ", features)}",
        };
    }

    /// <inheritdoc/>
    public IBlockQueue OpenQueue(int queue, int depth)
    {
        if (queue < 0 || queue >= NbdCookie.MaxQueues) throw new ArgumentOutOfRangeException(nameof(queue), $"queue {queue} outside 0..{NbdCookie.MaxQueues - 1}");
        if (depth < 1 || depth >= NbdCookie.MaxDepth) throw new ArgumentOutOfRangeException(nameof(depth), $"depth {depth} outside 1..{NbdCookie.MaxDepth - 1}");
        NbdConnection conn;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            conn = _primary;
            if (MultiConn && queue > 0)
            {
                // Connects in the background: opening a queue never waits on the network.
                conn = new NbdConnection($"nbd#{queue}", _o, _export, _partLimit, null, null, true, _counters, _log);
                _extra.Add(conn);
            }
        }
        var q = new NbdQueue(conn, queue, depth, _export, _partLimit, Info.ReadOnly, _counters);
        conn.Register(q);
        return q;
    }

    /// <summary>Managed bytes the connections' threads allocated so far (diagnostics for tests).</summary>
    internal long ThreadAllocatedBytes()
    {
        lock (_lock) return _primary.ThreadAllocatedBytes + _extra.Sum(c => c.ThreadAllocatedBytes);
    }

    /// <inheritdoc/>
    public ulong QuerySize()
    {
        var e = _primary.Current ?? _export;
        return e.Size / e.Alignment * e.Alignment;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        NbdConnection[] all;
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            all = [_primary, .. _extra];
        }
        foreach (var c in all) c.Dispose();
    }
}
