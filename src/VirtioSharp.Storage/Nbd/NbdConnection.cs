using System.Buffers.Binary;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace VirtioSharp.Storage.Nbd;

/// <summary>
/// One NBD connection in the transmission phase, shared by the queues registered with it. A sender thread writes
/// request headers (batched) and write payloads straight from the requests' iovecs; a receiver thread reads replies,
/// checks each against the request it names, moves read data straight into the iovecs, posts completions, and owns
/// the connection's life: when the server goes away, hangs or breaks the protocol it closes the socket, reconnects
/// with backoff and re-sends every unanswered command (reads and writes are idempotent); after
/// <see cref="NbdStorageOptions.ReconnectTimeout"/> without a server, waiting requests fail with EIO.
/// </summary>
/// <remarks>
/// Everything shared is guarded by <see cref="Gate"/>, which is never held across a socket call. A request's memory
/// is touched by the sender only while its slot is <see cref="NbdSlot.SendBusy"/> (its completion waits for that)
/// and by the receiver only before it posts the completion, so no thread touches it once it is reaped.
/// </remarks>
internal sealed unsafe class NbdConnection : IDisposable
{
    private const int BatchMax = 32;

    /// <summary>The lock for slots, queues' completion rings and this connection's state.</summary>
    public readonly object Gate = new();

    private readonly NbdStorageOptions _o;
    private readonly NbdCounters _c;
    private readonly ILogger _log;
    private readonly string _name;
    private readonly NbdExport _reference;
    private readonly uint _partLimit;
    private readonly bool _requireMultiConn;
    private volatile NbdExport? _current;

    private NbdQueue?[] _queues = [];
    private Socket? _socket;
    private bool _connected;
    private long _outageSince;
    private bool _failFast;
    private bool _closing;
    private bool _senderBusy;
    private NbdSlot? _sendHead, _sendTail;
    private int _inFlightParts;
    private long _lastProgress;

    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _sender, _receiver;
    private readonly byte[] _sendBuf = new byte[NbdProtocol.RequestSize * BatchMax];
    private readonly NbdSlot?[] _batch = new NbdSlot?[BatchMax];
    private readonly byte[] _recvBuf = new byte[NbdProtocol.MaxString + 64];
    // Bytes the two threads allocated (diagnostics: the hot path should allocate nothing).
    private long _senderAllocated, _receiverAllocated;

    /// <summary>Managed bytes the sender and receiver threads allocated so far.</summary>
    internal long ThreadAllocatedBytes => Volatile.Read(ref _senderAllocated) + Volatile.Read(ref _receiverAllocated);

    /// <param name="name">For log lines.</param>
    /// <param name="o">Endpoint and timeouts.</param>
    /// <param name="reference">The export the queues were built for: a reconnection must offer at least as much.</param>
    /// <param name="partLimit">Payload per read/write command the queues split at.</param>
    /// <param name="initial">A socket already in the transmission phase with <paramref name="initialExport"/>, or null to connect in the background.</param>
    /// <param name="initialExport">The export <paramref name="initial"/> negotiated.</param>
    /// <param name="requireMultiConn">This is an extra connection of a multi-conn storage: the server must keep CAN_MULTI_CONN.</param>
    /// <param name="counters">Shared counters.</param>
    /// <param name="log">Logger.</param>
    public NbdConnection(string name, NbdStorageOptions o, NbdExport reference, uint partLimit, Socket? initial,
        NbdExport? initialExport, bool requireMultiConn, NbdCounters counters, ILogger log)
    {
        _name = name;
        _o = o;
        _reference = reference;
        _partLimit = partLimit;
        _requireMultiConn = requireMultiConn;
        _c = counters;
        _log = log;
        _current = initialExport;
        if (initial == null) _outageSince = Environment.TickCount64;
        _sender = new Thread(SenderLoop) { IsBackground = true, Name = $"{name} send" };
        _receiver = new Thread(() => ReceiverLoop(initial)) { IsBackground = true, Name = $"{name} recv" };
        _sender.Start();
        _receiver.Start();
    }

    /// <summary>The export as the latest handshake described it (null before the first).</summary>
    public NbdExport? Current => _current;

    public void Register(NbdQueue q)
    {
        lock (Gate)
        {
            if (q.Index >= _queues.Length) Array.Resize(ref _queues, q.Index + 1);
            if (_queues[q.Index] != null) throw new InvalidOperationException($"queue {q.Index} is already open");
            _queues[q.Index] = q;
        }
    }

    public void Unregister(NbdQueue q)
    {
        lock (Gate)
        {
            if (q.Index < _queues.Length && _queues[q.Index] == q) _queues[q.Index] = null;
        }
    }

    /// <summary>Kick: the owner thread hands over its pending list (linked through <see cref="NbdSlot.NextPending"/>).</summary>
    public void Start(NbdSlot head)
    {
        lock (Gate)
        {
            bool queued = false;
            for (NbdSlot? s = head; s != null;)
            {
                var next = s.NextPending;
                s.NextPending = null;
                s.State = NbdSlotState.Active;
                if (s.Error == 0 && s.PartCount > 0 && (_failFast || _closing)) s.Error = NbdProtocol.EIo;
                if (s.Error != 0 || s.PartCount == 0) s.Queue.PostCompletion(s);
                else { EnqueueSend(s); queued = true; }
                s = next;
            }
            if (queued) Monitor.PulseAll(Gate);
        }
    }

    private void EnqueueSend(NbdSlot s)
    {
        if (s.InSendQueue) return;
        s.InSendQueue = true;
        s.NextSend = null;
        if (_sendTail == null) _sendHead = s; else _sendTail.NextSend = s;
        _sendTail = s;
    }

    private void DequeueHead()
    {
        var s = _sendHead!;
        _sendHead = s.NextSend;
        if (_sendHead == null) _sendTail = null;
        s.NextSend = null;
        s.InSendQueue = false;
    }

    private void ClearSendQueue()
    {
        while (_sendHead != null) DequeueHead();
    }

    // ---------------------------------------------------------------- sender

    private void SenderLoop()
    {
        try
        {
            while (true)
            {
                Socket sock;
                int n = 0;
                NbdSlot? writeSlot = null;
                int writePart = -1;
                bool disc = false;
                lock (Gate)
                {
                    while (!_closing && !(_connected && _sendHead != null)) Monitor.Wait(Gate);
                    if (_closing)
                    {
                        if (!_connected) return;
                        disc = true;
                    }
                    sock = _socket!;
                    while (!disc && n < BatchMax && _sendHead != null)
                    {
                        var s = _sendHead;
                        int part = s.NextSendable();
                        if (part < 0) { DequeueHead(); continue; }
                        bool payload = s.Command == NbdProtocol.CmdWrite && part < s.DataParts;
                        WriteHeader(_sendBuf.AsSpan(n * NbdProtocol.RequestSize), s, part);
                        s.InFlightMask |= 1UL << (part - s.WindowBase);
                        s.Received[part % NbdSlot.Window] = 0;
                        s.NextPart = part + 1;
                        s.Sent = true;
                        s.SendBusy = true;
                        _batch[n++] = s;
                        // Silence is measured from the first command after an idle spell, not from the last reply.
                        if (_inFlightParts++ == 0) Volatile.Write(ref _lastProgress, Environment.TickCount64);
                        if (s.NextSendable() < 0) DequeueHead();
                        if (payload) { writeSlot = s; writePart = part; break; }
                    }
                    if (!disc && n == 0) continue;
                    _senderBusy = true;
                }

                Volatile.Write(ref _senderAllocated, GC.GetAllocatedBytesForCurrentThread());
                bool ok = true;
                try
                {
                    if (disc)
                    {
                        // NBD_CMD_DISC: a soft disconnect; offset and length MUST be zero ("NBD_CMD_DISC").
                        WriteHeader(_sendBuf, NbdProtocol.CmdDisc, 0, 0, 0, 0);
                        NbdSocket.SendAll(sock, _sendBuf.AsSpan(0, NbdProtocol.RequestSize));
                    }
                    else
                    {
                        NbdSocket.SendAll(sock, _sendBuf.AsSpan(0, n * NbdProtocol.RequestSize));
                        if (writeSlot != null) SendPayload(sock, writeSlot, writePart);
                        Interlocked.Add(ref _c.Commands, n);
                    }
                }
                catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
                {
                    ok = false;
                    if (!disc) _log.LogDebug("{Name}: send failed: {Message}", _name, e.Message);
                }

                lock (Gate)
                {
                    _senderBusy = false;
                    for (int i = 0; i < n; i++)
                    {
                        var s = _batch[i]!;
                        _batch[i] = null;
                        s.SendBusy = false;
                        if (s.DeferredComplete) { s.DeferredComplete = false; s.Queue.PostCompletion(s); }
                    }
                    // The receiver notices a shut-down socket and runs the reconnection.
                    if (!ok && _socket == sock) ShutdownQuietly(sock);
                    Monitor.PulseAll(Gate);
                    if (disc) return;
                }
            }
        }
        catch (Exception e)
        {
            Interlocked.Increment(ref _c.InternalFaults);
            _log.LogError(e, "{Name}: sender thread failed", _name);
        }
    }

    private static void WriteHeader(Span<byte> h, NbdSlot s, int part)
    {
        ulong cookie = NbdCookie.Make(s.Generation, s.Queue.Index, s.Index, part);
        if (part < s.DataParts)
            WriteHeader(h, s.Command, s.CommandFlags, cookie, s.PartOffset(part), s.PartLength(part));
        else
            WriteHeader(h, NbdProtocol.CmdFlush, 0, cookie, 0, 0);   // the trailing flush of a FUA write
    }

    /// <summary>The request message ("Request message"): magic, flags, type, cookie, offset, length.</summary>
    private static void WriteHeader(Span<byte> h, ushort type, ushort flags, ulong cookie, ulong offset, uint length)
    {
        BinaryPrimitives.WriteUInt32BigEndian(h, NbdProtocol.RequestMagic);
        BinaryPrimitives.WriteUInt16BigEndian(h[4..], flags);
        BinaryPrimitives.WriteUInt16BigEndian(h[6..], type);
        BinaryPrimitives.WriteUInt64BigEndian(h[8..], cookie);
        BinaryPrimitives.WriteUInt64BigEndian(h[16..], offset);
        BinaryPrimitives.WriteUInt32BigEndian(h[24..], length);
    }

    private static void SendPayload(Socket sock, NbdSlot s, int part)
    {
        ulong skip = (ulong)part * s.PartSize;
        ulong left = s.PartLength(part);
        int i = 0;
        while (i < s.VectorCount && skip >= s.Vectors[i].Length) { skip -= s.Vectors[i].Length; i++; }
        while (left > 0)
        {
            var v = s.Vectors[i];
            int chunk = (int)Math.Min(Math.Min(v.Length - skip, left), int.MaxValue);
            NbdSocket.SendAll(sock, new ReadOnlySpan<byte>((byte*)v.Base + skip, chunk));
            left -= (ulong)chunk;
            skip += (ulong)chunk;
            if (skip == v.Length) { i++; skip = 0; }
        }
    }

    // ---------------------------------------------------------------- receiver and connection life

    private void ReceiverLoop(Socket? initial)
    {
        try
        {
            var sock = initial;
            while (true)
            {
                sock ??= Reconnect();
                if (sock == null) return;
                Activate(sock);
                string why;
                bool soft = false;
                try
                {
                    ReceiveReplies(sock);
                    why = "receiver stopped";
                }
                catch (NbdProtocolException e)
                {
                    Interlocked.Increment(ref _c.ProtocolErrors);
                    why = $"protocol violation: {e.Message}";
                }
                catch (NbdShutdownException)
                {
                    soft = true;
                    why = "the server is shutting down (NBD_ESHUTDOWN)";
                }
                catch (OperationCanceledException) { why = "closed"; }
                catch (Exception e) when (e is IOException or SocketException or TimeoutException or ObjectDisposedException)
                {
                    why = e.Message;
                }
                catch (Exception e)
                {
                    // A bug, not the server: count it (tests assert zero) and recover like from a broken connection.
                    Interlocked.Increment(ref _c.InternalFaults);
                    _log.LogError(e, "{Name}: receiver fault", _name);
                    why = $"internal fault: {e.GetType().Name}";
                }
                if (Deactivate(sock, soft)) return;
                _log.LogWarning("{Name}: connection lost ({Why}); reconnecting", _name, why);
                sock = null;
            }
        }
        catch (Exception e)
        {
            Interlocked.Increment(ref _c.InternalFaults);
            _log.LogError(e, "{Name}: receiver thread failed", _name);
        }
    }

    /// <summary>The connection is up: unanswered commands of every active request go out again.</summary>
    private void Activate(Socket sock)
    {
        lock (Gate)
        {
            _socket = sock;
            _connected = true;
            _outageSince = 0;
            _failFast = false;
            _inFlightParts = 0;
            ClearSendQueue();
            foreach (var q in _queues)
            {
                if (q == null) continue;
                foreach (var s in q.Slots)
                {
                    if (s.State != NbdSlotState.Active || s.DeferredComplete) continue;
                    if (s.Sent)
                    {
                        Interlocked.Increment(ref _c.Resends);
                        if (++s.Resends > _o.MaxResends)
                        {
                            _log.LogWarning("{Name}: request at offset {Offset} failed after {Count} resends", _name, s.Offset, _o.MaxResends);
                            if (s.Error == 0) s.Error = NbdProtocol.EIo;
                            Complete(s);
                            continue;
                        }
                    }
                    s.ResetForResend();
                    EnqueueSend(s);
                }
            }
            Volatile.Write(ref _lastProgress, Environment.TickCount64);
            Monitor.PulseAll(Gate);
        }
    }

    /// <summary>Takes the socket away from the sender and closes it; true if the connection is being disposed.</summary>
    private bool Deactivate(Socket sock, bool soft)
    {
        bool closing;
        lock (Gate)
        {
            _connected = false;
            _socket = null;
            if (_outageSince == 0) _outageSince = Environment.TickCount64;
            if (!soft) ShutdownQuietly(sock);
            while (_senderBusy) Monitor.Wait(Gate);
            closing = _closing;
        }
        if (soft)
        {
            // NBD_ESHUTDOWN: the client MUST initiate a soft disconnect ("Terminating the transmission phase").
            try
            {
                Span<byte> h = stackalloc byte[NbdProtocol.RequestSize];
                WriteHeader(h, NbdProtocol.CmdDisc, 0, 0, 0, 0);
                NbdSocket.SendAll(sock, h);
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException) { }
        }
        sock.Dispose();
        if (!closing) Interlocked.Increment(ref _c.Disconnects);
        return closing;
    }

    /// <summary>Connects and negotiates again with backoff; null when the connection is being disposed.</summary>
    private Socket? Reconnect()
    {
        long delay = Math.Max(1, (long)_o.ReconnectDelay.TotalMilliseconds);
        int attempt = 0;
        while (true)
        {
            lock (Gate)
            {
                if (_closing) return null;
                CheckOutage();
            }
            attempt++;
            try
            {
                var s = NbdSocket.Connect(_o, _stop.Token);
                try
                {
                    var e = NbdHandshake.Negotiate(s, _o, _stop.Token);
                    string? why = Incompatible(e);
                    if (why == null)
                    {
                        if (_current != null) Interlocked.Increment(ref _c.Reconnects);
                        _current = e;
                        _log.LogInformation("{Name}: connected to {Server} (attempt {Attempt})", _name, _o.Describe(), attempt);
                        return s;
                    }
                    _log.LogWarning("{Name}: the server came back with a different export: {Why}", _name, why);
                    s.Dispose();
                }
                catch
                {
                    s.Dispose();
                    throw;
                }
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested) { return null; }
            catch (Exception e)
            {
                if (e is NbdProtocolException) Interlocked.Increment(ref _c.ProtocolErrors);
                if (attempt == 1 || attempt % 20 == 0)
                    _log.LogDebug("{Name}: reconnect attempt {Attempt} failed: {Message}", _name, attempt, e.Message);
            }
            long wait = delay;
            lock (Gate)
            {
                long left = _outageSince + (long)_o.ReconnectTimeout.TotalMilliseconds - Environment.TickCount64;
                if (!_failFast) wait = Math.Clamp(left, 1, wait);
            }
            if (_stop.Token.WaitHandle.WaitOne((int)wait)) return null;
            delay = Math.Max(1, Math.Min(delay * 2, (long)_o.MaxReconnectDelay.TotalMilliseconds));
        }
    }

    /// <summary>Why <paramref name="e"/> cannot serve requests built for the first export, or null.</summary>
    private string? Incompatible(NbdExport e)
    {
        if (e.Alignment > _reference.Alignment) return $"it needs {e.Alignment}-byte alignment (was {_reference.Alignment})";
        if (e.PayloadLimit(_o.MaxPayload) < _partLimit) return $"its maximum payload fell below {_partLimit}";
        // The client MUST NOT use a feature whose flag is not set ("Transmission flags").
        const ushort features = NbdProtocol.TxSendFlush | NbdProtocol.TxSendFua | NbdProtocol.TxSendTrim | NbdProtocol.TxSendWriteZeroes;
        if ((_reference.Flags & features & ~e.Flags) != 0) return $"it lost transmission flags 0x{_reference.Flags & features & ~e.Flags:x}";
        if (_requireMultiConn && !e.Has(NbdProtocol.TxCanMultiConn)) return "it no longer allows multi-conn";
        return null;
    }

    /// <summary>Caller holds the lock: past the reconnect timeout every waiting request fails, and new ones fail at once.</summary>
    private void CheckOutage()
    {
        if (_failFast || _outageSince == 0) return;
        if (Environment.TickCount64 - _outageSince < (long)_o.ReconnectTimeout.TotalMilliseconds) return;
        _failFast = true;
        ClearSendQueue();
        int failed = 0;
        foreach (var q in _queues)
        {
            if (q == null) continue;
            foreach (var s in q.Slots)
            {
                if (s.State != NbdSlotState.Active || s.DeferredComplete) continue;
                if (s.Error == 0) s.Error = NbdProtocol.EIo;
                Complete(s);
                failed++;
            }
        }
        _log.LogError("{Name}: no server for {Seconds} s; {Count} request(s) failed with EIO, new ones fail until it is back",
            _name, _o.ReconnectTimeout.TotalSeconds, failed);
    }

    /// <summary>Caller holds the lock.</summary>
    private void Complete(NbdSlot s)
    {
        if (s.InSendQueue) RemoveFromSendQueue(s);
        if (s.SendBusy) s.DeferredComplete = true;
        else s.Queue.PostCompletion(s);
    }

    private void RemoveFromSendQueue(NbdSlot s)
    {
        NbdSlot? prev = null;
        for (var p = _sendHead; p != null; prev = p, p = p.NextSend)
        {
            if (p != s) continue;
            if (prev == null) _sendHead = p.NextSend; else prev.NextSend = p.NextSend;
            if (_sendTail == p) _sendTail = prev;
            break;
        }
        s.NextSend = null;
        s.InSendQueue = false;
    }

    private static void ShutdownQuietly(Socket s)
    {
        try { s.Shutdown(SocketShutdown.Both); }
        catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
    }

    // ---------------------------------------------------------------- replies

    /// <summary>What a receive consults while the server is silent: disposal, and how long requests have waited.</summary>
    private struct ReplyWatch(NbdConnection c) : NbdSocket.IReceiveWatch
    {
        /// <summary>Inside a message: any silence counts, not only while commands wait.</summary>
        public bool InMessage;

        public readonly void Idle()
        {
            c._stop.Token.ThrowIfCancellationRequested();
            if (!InMessage && Volatile.Read(ref c._inFlightParts) == 0) return;
            long silent = Environment.TickCount64 - Volatile.Read(ref c._lastProgress);
            if (silent > (long)c._o.RequestTimeout.TotalMilliseconds)
                throw new TimeoutException($"the server sent nothing for {silent / 1000.0:0.#} s while requests waited");
        }

        public readonly void Progress(int bytes) => Volatile.Write(ref c._lastProgress, Environment.TickCount64);
    }

    private void ReceiveReplies(Socket sock)
    {
        var watch = new ReplyWatch(this);
        var buf = _recvBuf.AsSpan();
        while (true)
        {
            Volatile.Write(ref _receiverAllocated, GC.GetAllocatedBytesForCurrentThread());
            watch.InMessage = false;
            NbdSocket.ReceiveAll(sock, buf[..4], ref watch);
            watch.InMessage = true;
            uint magic = BinaryPrimitives.ReadUInt32BigEndian(buf);
            if (magic == NbdProtocol.SimpleReplyMagic) SimpleReply(sock, ref watch);
            else if (magic == NbdProtocol.StructuredReplyMagic) StructuredChunk(sock, ref watch);
            else throw new NbdProtocolException($"bad reply magic 0x{magic:x8}");
        }
    }

    private void SimpleReply(Socket sock, ref ReplyWatch watch)
    {
        var buf = _recvBuf.AsSpan();
        NbdSocket.ReceiveAll(sock, buf[4..NbdProtocol.SimpleReplySize], ref watch);
        uint error = BinaryPrimitives.ReadUInt32BigEndian(buf[4..]);
        ulong cookie = BinaryPrimitives.ReadUInt64BigEndian(buf[8..]);
        var (s, part) = Lookup(cookie);
        bool read = s.Command == NbdProtocol.CmdRead;
        // With structured replies negotiated the server MUST NOT answer a read with a simple reply ("Structured reply chunk message").
        if (read && _current!.Structured) throw new NbdProtocolException("simple reply to a read although structured replies were negotiated");
        if (error == NbdProtocol.EShutdown) throw new NbdShutdownException();
        // A read's data follows only on success ("Simple reply message").
        if (read && error == 0) ReceiveData(sock, s, (ulong)part * s.PartSize, s.PartLength(part), ref watch);
        FinishPart(s, part, error == 0 ? 0 : NbdProtocol.ToErrno(error));
    }

    private void StructuredChunk(Socket sock, ref ReplyWatch watch)
    {
        if (!_current!.Structured) throw new NbdProtocolException("structured reply chunk although structured replies were not negotiated");
        var buf = _recvBuf.AsSpan();
        NbdSocket.ReceiveAll(sock, buf[4..NbdProtocol.StructuredReplySize], ref watch);
        ushort flags = BinaryPrimitives.ReadUInt16BigEndian(buf[4..]);
        ushort type = BinaryPrimitives.ReadUInt16BigEndian(buf[6..]);
        ulong cookie = BinaryPrimitives.ReadUInt64BigEndian(buf[8..]);
        uint length = BinaryPrimitives.ReadUInt32BigEndian(buf[16..]);
        var (s, part) = Lookup(cookie);
        bool read = s.Command == NbdProtocol.CmdRead;
        bool done = (flags & NbdProtocol.ReplyFlagDone) != 0;
        uint partLength = s.PartLength(part);
        int slotIndex = part % NbdSlot.Window;

        switch (type)
        {
            case NbdProtocol.ReplyTypeNone:
                // Length MUST be 0 and DONE MUST be set ("NBD_REPLY_TYPE_NONE").
                if (length != 0) throw new NbdProtocolException($"NBD_REPLY_TYPE_NONE with length {length}");
                if (!done) throw new NbdProtocolException("NBD_REPLY_TYPE_NONE without NBD_REPLY_FLAG_DONE");
                break;
            case NbdProtocol.ReplyTypeOffsetData:
            {
                if (!read) throw new NbdProtocolException("NBD_REPLY_TYPE_OFFSET_DATA for a command that is not a read");
                if (length < 9) throw new NbdProtocolException($"NBD_REPLY_TYPE_OFFSET_DATA of length {length} (at least 9)");
                NbdSocket.ReceiveAll(sock, buf[..8], ref watch);
                ulong offset = BinaryPrimitives.ReadUInt64BigEndian(buf);
                uint data = length - 8;
                CheckContent(s, part, offset, data, "data");
                ReceiveData(sock, s, offset - s.Offset, data, ref watch);
                s.Received[slotIndex] += data;
                break;
            }
            case NbdProtocol.ReplyTypeOffsetHole:
            {
                if (!read) throw new NbdProtocolException("NBD_REPLY_TYPE_OFFSET_HOLE for a command that is not a read");
                if (length != 12) throw new NbdProtocolException($"NBD_REPLY_TYPE_OFFSET_HOLE of length {length} (exactly 12)");
                NbdSocket.ReceiveAll(sock, buf[..12], ref watch);
                ulong offset = BinaryPrimitives.ReadUInt64BigEndian(buf);
                uint hole = BinaryPrimitives.ReadUInt32BigEndian(buf[8..]);
                if (hole == 0) throw new NbdProtocolException("NBD_REPLY_TYPE_OFFSET_HOLE of size 0");
                CheckContent(s, part, offset, hole, "hole");
                ZeroData(s, offset - s.Offset, hole);
                s.Received[slotIndex] += hole;
                break;
            }
            default:
                // Unknown non-error types MUST cause a hard disconnect ("Structured reply types").
                if ((type & NbdProtocol.ReplyTypeErrorBit) == 0)
                    throw new NbdProtocolException($"unexpected structured reply type {type}");
                ErrorChunk(sock, s, type, length, ref watch);
                break;
        }
        if (!done) return;
        // Without an error the chunks MUST cover the whole request ("NBD_CMD_READ", structured replies).
        if (read && s.Error == 0 && s.Received[slotIndex] != partLength)
            throw new NbdProtocolException($"read reply done after {s.Received[slotIndex]} of {partLength} bytes");
        FinishPart(s, part, 0);
    }

    /// <summary>Content chunks MUST lie inside the request and not overlap earlier ones ("NBD_REPLY_TYPE_OFFSET_DATA").</summary>
    private static void CheckContent(NbdSlot s, int part, ulong offset, uint length, string what)
    {
        ulong start = s.PartOffset(part);
        uint partLength = s.PartLength(part);
        if (offset < start || length > partLength || offset - start > partLength - length)
            throw new NbdProtocolException($"{what} chunk [{offset}, +{length}) outside the request [{start}, +{partLength})");
        // Overlapping chunks would add up past the request; exact overlap detection would need a range set per part.
        if (length > partLength - s.Received[part % NbdSlot.Window])
            throw new NbdProtocolException($"{what} chunks add up to more than the {partLength} bytes asked for");
    }

    private void ErrorChunk(Socket sock, NbdSlot s, ushort type, uint length, ref ReplyWatch watch)
    {
        var buf = _recvBuf.AsSpan();
        // Error chunks start with error (32) and message length (16) ("Structured reply types").
        if (length < 6) throw new NbdProtocolException($"error chunk of length {length} (at least 6)");
        NbdSocket.ReceiveAll(sock, buf[..6], ref watch);
        uint error = BinaryPrimitives.ReadUInt32BigEndian(buf);
        ushort messageLength = BinaryPrimitives.ReadUInt16BigEndian(buf[4..]);
        if (messageLength > length - 6) throw new NbdProtocolException($"error message of {messageLength} bytes in a chunk of {length}");
        if (messageLength > NbdProtocol.MaxString) throw new NbdProtocolException($"error message of {messageLength} bytes (at most 4096)");
        NbdSocket.ReceiveAll(sock, buf[..messageLength], ref watch);
        string message = messageLength > 0 ? NbdProtocol.Sanitize(buf[..messageLength]) : "";
        uint rest = length - 6 - messageLength;
        if (type == NbdProtocol.ReplyTypeErrorOffset)
        {
            if (rest != 8) throw new NbdProtocolException($"NBD_REPLY_TYPE_ERROR_OFFSET with {rest} bytes after the message (8 expected)");
            NbdSocket.ReceiveAll(sock, buf[..8], ref watch);
            ulong offset = BinaryPrimitives.ReadUInt64BigEndian(buf);
            // The offset MUST lie within the original request ("NBD_REPLY_TYPE_ERROR_OFFSET").
            if (offset < s.Offset || offset - s.Offset >= Math.Max(s.Length, 1))
                throw new NbdProtocolException($"error offset {offset} outside the request [{s.Offset}, +{s.Length})");
        }
        else if (type == NbdProtocol.ReplyTypeError)
        {
            if (rest != 0) throw new NbdProtocolException($"NBD_REPLY_TYPE_ERROR with {rest} stray bytes");
        }
        else
        {
            // Unknown error types: the reply counts as errored; skip its remaining fields (bounded).
            if (rest > NbdProtocol.MaxString) throw new NbdProtocolException($"error chunk type {type} with {rest} further bytes");
            NbdSocket.ReceiveAll(sock, buf[..(int)rest], ref watch);
        }
        if (error == 0) throw new NbdProtocolException("error chunk with error 0 (MUST be nonzero)");
        if (error == NbdProtocol.EShutdown) throw new NbdShutdownException();
        if (s.Error == 0) s.Error = NbdProtocol.ToErrno(error);
        _log.LogDebug("{Name}: server error {Error} at offset {Offset}: {Message}", _name, error, s.Offset, message);
    }

    /// <summary>
    /// The request a reply names. The cookie MUST be one in flight ("Transmission"): its queue, slot, generation and
    /// part must match a command sent on this connection and not yet answered.
    /// </summary>
    private (NbdSlot, int) Lookup(ulong cookie)
    {
        lock (Gate)
        {
            int qi = NbdCookie.Queue(cookie), si = NbdCookie.Slot(cookie), part = NbdCookie.Part(cookie);
            var q = qi < _queues.Length ? _queues[qi] : null;
            if (q == null || si >= q.Slots.Length) throw UnknownCookie(cookie);
            var s = q.Slots[si];
            if (s.State != NbdSlotState.Active || s.Generation != NbdCookie.Generation(cookie)) throw UnknownCookie(cookie);
            int bit = part - s.WindowBase;
            if (bit < 0 || bit >= NbdSlot.Window || (s.InFlightMask >> bit & 1) == 0) throw UnknownCookie(cookie);
            return (s, part);
        }
    }

    private static NbdProtocolException UnknownCookie(ulong cookie) => new($"reply for cookie 0x{cookie:x16}, which is not in flight");

    private void FinishPart(NbdSlot s, int part, int error)
    {
        lock (Gate)
        {
            if (error != 0 && s.Error == 0) s.Error = error;
            _inFlightParts--;
            if (s.MarkDone(part)) Complete(s);
            else if (!s.InSendQueue && s.NextSendable() >= 0)
            {
                EnqueueSend(s);
                Monitor.PulseAll(Gate);
            }
        }
    }

    /// <summary>Receives <paramref name="length"/> bytes from the socket straight into the request's vectors at <paramref name="at"/>.</summary>
    private static void ReceiveData(Socket sock, NbdSlot s, ulong at, uint length, ref ReplyWatch watch)
    {
        int i = Seek(s, ref at);
        ulong left = length;
        while (left > 0)
        {
            var v = s.Vectors[i];
            int chunk = (int)Math.Min(Math.Min(v.Length - at, left), int.MaxValue);
            NbdSocket.ReceiveAll(sock, new Span<byte>((byte*)v.Base + at, chunk), ref watch);
            left -= (ulong)chunk;
            at += (ulong)chunk;
            if (at == v.Length) { i++; at = 0; }
        }
    }

    private static void ZeroData(NbdSlot s, ulong at, uint length)
    {
        int i = Seek(s, ref at);
        ulong left = length;
        while (left > 0)
        {
            var v = s.Vectors[i];
            int chunk = (int)Math.Min(Math.Min(v.Length - at, left), int.MaxValue);
            new Span<byte>((byte*)v.Base + at, chunk).Clear();
            left -= (ulong)chunk;
            at += (ulong)chunk;
            if (at == v.Length) { i++; at = 0; }
        }
    }

    /// <summary>The vector holding byte <paramref name="at"/> of the request (which was checked to lie inside it); <paramref name="at"/> becomes the offset in it.</summary>
    private static int Seek(NbdSlot s, ref ulong at)
    {
        int i = 0;
        while (i < s.VectorCount && at >= s.Vectors[i].Length) { at -= s.Vectors[i].Length; i++; }
        return i;
    }

    public void Dispose()
    {
        lock (Gate)
        {
            if (_closing) return;
            _closing = true;
            Monitor.PulseAll(Gate);
        }
        // The sender sends NBD_CMD_DISC if connected, then exits; the receiver then sees the socket close. A sender
        // stuck on a server that stopped reading is released by shutting the socket down.
        if (!_sender.Join(1000))
        {
            lock (Gate) if (_socket != null) ShutdownQuietly(_socket);
            _sender.Join();
        }
        _stop.Cancel();
        lock (Gate) if (_socket != null) ShutdownQuietly(_socket);
        _receiver.Join();
        _stop.Dispose();
    }
}
