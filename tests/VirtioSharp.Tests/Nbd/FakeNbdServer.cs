using System.Buffers.Binary;
using System.Net.Sockets;

namespace VirtioSharp.Tests.Nbd;

/// <summary>What a <see cref="FakeNbdServer"/> connection does with the first read it is sent.</summary>
public enum FakeMode
{
    Good,
    BadMagic,
    UnknownCookie,
    DuplicateReply,
    OverlongChunk,
    ChunkOutsideRequest,
    HoleOutsideRequest,
    OversizeErrorMessage,
    ShortRead,
    SimpleReplyToRead,
    UnknownChunkType,
    Silent,
    /// <summary>Collects reads and answers them in reverse order, each in several interleaved chunks (data and holes).</summary>
    ReverseFragmented,
}

/// <summary>
/// A small in-test NBD server on a Unix socket: fixed newstyle, structured replies, NBD_OPT_GO with block sizes
/// 512/4096/1 MiB, a RAM disk. Connection n behaves as <c>mode(n)</c> says (hostile ones misbehave on their first read).
/// </summary>
internal sealed class FakeNbdServer : IDisposable
{
    private const uint SimpleMagic = 0x67446698, StructMagic = 0x668e33ef;
    private readonly Socket _listener;
    private readonly Func<int, FakeMode> _mode;
    private readonly Thread _accept;
    private readonly List<Socket> _clients = [];
    private int _connections;
    private readonly ushort _flags;
    /// <summary>Command types in the order they arrived (all connections).</summary>
    public readonly List<ushort> Commands = [];
    private volatile bool _stopped;

    public FakeNbdServer(string path, int size, Func<int, FakeMode> mode, ushort transmissionFlags = 1 | 4 | 8)
    {
        _flags = transmissionFlags;
        Disk = new byte[size];
        _mode = mode;
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(path));
        _listener.Listen(8);
        _accept = new Thread(Accept) { IsBackground = true, Name = "fake nbd accept" };
        _accept.Start();
    }

    public byte[] Disk { get; }
    public int Connections => Volatile.Read(ref _connections);
    /// <summary>Reads answered in reverse-fragmented mode (to check the mode was exercised).</summary>
    public int Reordered;

    private void Accept()
    {
        while (!_stopped)
        {
            Socket c;
            try { c = _listener.Accept(); }
            catch (Exception) { return; }
            int n = Interlocked.Increment(ref _connections) - 1;
            lock (_clients) _clients.Add(c);
            new Thread(() => Serve(c, _mode(n))) { IsBackground = true, Name = $"fake nbd {n}" }.Start();
        }
    }

    private void Serve(Socket c, FakeMode mode)
    {
        try
        {
            using (c)
            {
                Handshake(c);
                Transmit(c, mode);
            }
        }
        catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException or EndOfStreamException) { }
    }

    private void Handshake(Socket c)
    {
        var hello = new byte[18];
        BinaryPrimitives.WriteUInt64BigEndian(hello, 0x4e42444d41474943);
        BinaryPrimitives.WriteUInt64BigEndian(hello.AsSpan(8), 0x49484156454F5054);
        BinaryPrimitives.WriteUInt16BigEndian(hello.AsSpan(16), 3);   // FIXED_NEWSTYLE | NO_ZEROES
        Send(c, hello);
        Recv(c, 4);
        while (true)
        {
            var h = Recv(c, 16);
            uint opt = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(8));
            uint len = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(12));
            Recv(c, (int)len);
            if (opt == 8) { OptReply(c, opt, 1, []); continue; }   // STRUCTURED_REPLY → ACK
            if (opt == 7)
            {
                var export = new byte[12];
                BinaryPrimitives.WriteUInt16BigEndian(export, 0);
                BinaryPrimitives.WriteUInt64BigEndian(export.AsSpan(2), (ulong)Disk.Length);
                BinaryPrimitives.WriteUInt16BigEndian(export.AsSpan(10), _flags);   // default HAS_FLAGS | FLUSH | FUA
                OptReply(c, opt, 3, export);
                var bs = new byte[14];
                BinaryPrimitives.WriteUInt16BigEndian(bs, 3);
                BinaryPrimitives.WriteUInt32BigEndian(bs.AsSpan(2), 512);
                BinaryPrimitives.WriteUInt32BigEndian(bs.AsSpan(6), 4096);
                BinaryPrimitives.WriteUInt32BigEndian(bs.AsSpan(10), 1 << 20);
                OptReply(c, opt, 3, bs);
                OptReply(c, opt, 1, []);
                return;
            }
            OptReply(c, opt, 0x80000001, []);
        }
    }

    private static void OptReply(Socket c, uint opt, uint type, byte[] data)
    {
        var m = new byte[20 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(m, 0x3e889045565a9);
        BinaryPrimitives.WriteUInt32BigEndian(m.AsSpan(8), opt);
        BinaryPrimitives.WriteUInt32BigEndian(m.AsSpan(12), type);
        BinaryPrimitives.WriteUInt32BigEndian(m.AsSpan(16), (uint)data.Length);
        data.CopyTo(m, 20);
        Send(c, m);
    }

    private readonly record struct Req(ushort Type, ulong Cookie, ulong Offset, uint Length);

    private void Transmit(Socket c, FakeMode mode)
    {
        bool misbehaved = false;
        var held = new List<Req>();
        while (true)
        {
            if (mode == FakeMode.ReverseFragmented && held.Count > 0 && c.Available == 0 && !c.Poll(50_000, SelectMode.SelectRead))
            {
                AnswerReversed(c, held);
                held.Clear();
                continue;
            }
            var h = Recv(c, 28);
            var r = new Req(BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(6)), BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(8)),
                BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(16)), BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(24)));
            lock (Commands) Commands.Add((ushort)(r.Type | (BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(4)) << 8)));
            switch (r.Type)
            {
                case 2: return;   // DISC
                case 1:
                    var data = Recv(c, (int)r.Length);
                    lock (Disk) data.CopyTo(Disk, (int)r.Offset);
                    Simple(c, r.Cookie, 0);
                    continue;
                case 0:
                    if (mode == FakeMode.ReverseFragmented) { held.Add(r); continue; }
                    if (mode == FakeMode.Good || misbehaved) { ReadReply(c, r); continue; }
                    misbehaved = true;
                    Misbehave(c, r, mode);
                    continue;
                default:
                    Chunk(c, r.Cookie, 1, 0, []);   // NONE | DONE
                    continue;
            }
        }
    }

    private void ReadReply(Socket c, Req r)
    {
        var payload = new byte[8 + r.Length];
        BinaryPrimitives.WriteUInt64BigEndian(payload, r.Offset);
        lock (Disk) Disk.AsSpan((int)r.Offset, (int)r.Length).CopyTo(payload.AsSpan(8));
        Chunk(c, r.Cookie, 1, 1, payload);   // OFFSET_DATA | DONE
    }

    private void AnswerReversed(Socket c, List<Req> reads)
    {
        // Round 1: the second half of every read, newest first (a hole where it is all zero); round 2: the first
        // halves; round 3: NONE|DONE for each, oldest first.
        for (int i = reads.Count - 1; i >= 0; i--) Half(c, reads[i], second: true);
        for (int i = reads.Count - 1; i >= 0; i--) Half(c, reads[i], second: false);
        foreach (var r in reads) Chunk(c, r.Cookie, 1, 0, []);
        Interlocked.Add(ref Reordered, reads.Count);
    }

    private void Half(Socket c, Req r, bool second)
    {
        uint first = r.Length / 2 / 512 * 512;
        ulong off = second ? r.Offset + first : r.Offset;
        uint len = second ? r.Length - first : first;
        if (len == 0) return;
        byte[] bytes;
        lock (Disk) bytes = Disk.AsSpan((int)off, (int)len).ToArray();
        if (bytes.All(b => b == 0))
        {
            var hole = new byte[12];
            BinaryPrimitives.WriteUInt64BigEndian(hole, off);
            BinaryPrimitives.WriteUInt32BigEndian(hole.AsSpan(8), len);
            Chunk(c, r.Cookie, 0, 2, hole);
            return;
        }
        var p = new byte[8 + len];
        BinaryPrimitives.WriteUInt64BigEndian(p, off);
        bytes.CopyTo(p, 8);
        Chunk(c, r.Cookie, 0, 1, p);
    }

    private void Misbehave(Socket c, Req r, FakeMode mode)
    {
        switch (mode)
        {
            case FakeMode.BadMagic:
                var m = new byte[16];
                BinaryPrimitives.WriteUInt32BigEndian(m, 0xdeadbeef);
                BinaryPrimitives.WriteUInt64BigEndian(m.AsSpan(8), r.Cookie);
                Send(c, m);
                break;
            case FakeMode.UnknownCookie:
                Chunk(c, r.Cookie + (1UL << 20), 1, 0, []);   // the next slot's cookie: not in flight
                break;
            case FakeMode.DuplicateReply:
                ReadReply(c, r);
                ReadReply(c, r);
                break;
            case FakeMode.OverlongChunk:
            {
                var p = new byte[8 + r.Length + 4096];
                BinaryPrimitives.WriteUInt64BigEndian(p, r.Offset);
                p.AsSpan(8).Fill(0xEE);
                Chunk(c, r.Cookie, 1, 1, p);
                break;
            }
            case FakeMode.ChunkOutsideRequest:
            {
                var p = new byte[8 + 512];
                BinaryPrimitives.WriteUInt64BigEndian(p, r.Offset + r.Length);
                p.AsSpan(8).Fill(0xEE);
                Chunk(c, r.Cookie, 1, 1, p);
                break;
            }
            case FakeMode.HoleOutsideRequest:
            {
                var p = new byte[12];
                BinaryPrimitives.WriteUInt64BigEndian(p, r.Offset);
                BinaryPrimitives.WriteUInt32BigEndian(p.AsSpan(8), r.Length + 512);
                Chunk(c, r.Cookie, 1, 2, p);
                break;
            }
            case FakeMode.OversizeErrorMessage:
            {
                var p = new byte[6 + 60000];
                BinaryPrimitives.WriteUInt32BigEndian(p, 5);
                BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(4), 60000);
                p.AsSpan(6).Fill((byte)'A');
                Chunk(c, r.Cookie, 1, 0x8001, p);
                break;
            }
            case FakeMode.ShortRead:
            {
                var p = new byte[8 + r.Length / 2];
                BinaryPrimitives.WriteUInt64BigEndian(p, r.Offset);
                Chunk(c, r.Cookie, 0, 1, p);
                Chunk(c, r.Cookie, 1, 0, []);
                break;
            }
            case FakeMode.SimpleReplyToRead:
                Simple(c, r.Cookie, 0);
                Send(c, new byte[r.Length]);
                break;
            case FakeMode.UnknownChunkType:
                Chunk(c, r.Cookie, 1, 77, new byte[16]);
                break;
            case FakeMode.Silent:
                break;
        }
    }

    private static void Simple(Socket c, ulong cookie, uint error)
    {
        var m = new byte[16];
        BinaryPrimitives.WriteUInt32BigEndian(m, SimpleMagic);
        BinaryPrimitives.WriteUInt32BigEndian(m.AsSpan(4), error);
        BinaryPrimitives.WriteUInt64BigEndian(m.AsSpan(8), cookie);
        Send(c, m);
    }

    private static void Chunk(Socket c, ulong cookie, ushort flags, ushort type, byte[] payload)
    {
        var m = new byte[20 + payload.Length];
        BinaryPrimitives.WriteUInt32BigEndian(m, StructMagic);
        BinaryPrimitives.WriteUInt16BigEndian(m.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(m.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(m.AsSpan(8), cookie);
        BinaryPrimitives.WriteUInt32BigEndian(m.AsSpan(16), (uint)payload.Length);
        payload.CopyTo(m, 20);
        Send(c, m);
    }

    private static void Send(Socket c, byte[] data)
    {
        int at = 0;
        while (at < data.Length) at += c.Send(data, at, data.Length - at, SocketFlags.None);
    }

    private static byte[] Recv(Socket c, int n)
    {
        var b = new byte[n];
        int at = 0;
        while (at < n)
        {
            int k = c.Receive(b, at, n - at, SocketFlags.None);
            if (k == 0) throw new EndOfStreamException();
            at += k;
        }
        return b;
    }

    public void Dispose()
    {
        _stopped = true;
        _listener.Dispose();
        lock (_clients) foreach (var c in _clients) { try { c.Shutdown(SocketShutdown.Both); } catch (Exception) { } c.Dispose(); }
        _accept.Join(2000);
    }
}
