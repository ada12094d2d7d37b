using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace VirtioSharp.Storage.Nbd;

/// <summary>
/// The client side of fixed newstyle negotiation (proto.md "Fixed newstyle negotiation"): client flags FIXED_NEWSTYLE
/// and NO_ZEROES, NBD_OPT_STRUCTURED_REPLY, then NBD_OPT_GO asking for NBD_INFO_BLOCK_SIZE (falling back to
/// NBD_OPT_EXPORT_NAME on NBD_REP_ERR_UNSUP). Every server value is checked before it is used.
/// </summary>
internal static class NbdHandshake
{
    /// <summary>Bound on one option reply's payload: nothing we ask for is longer than a string plus a few fields.</summary>
    private const int MaxOptionReply = NbdProtocol.MaxString + 64;

    public static NbdExport Negotiate(Socket s, NbdStorageOptions o, CancellationToken ct)
    {
        var watch = new NbdSocket.DeadlineWatch(Environment.TickCount64 + (long)o.ConnectTimeout.TotalMilliseconds, ct);
        Span<byte> b = stackalloc byte[18];
        NbdSocket.ReceiveAll(s, b, ref watch);
        if (BinaryPrimitives.ReadUInt64BigEndian(b) != NbdProtocol.InitPasswd)
            throw new NbdProtocolException("not an NBD server (no NBDMAGIC)");
        ulong second = BinaryPrimitives.ReadUInt64BigEndian(b[8..]);
        if (second == NbdProtocol.OldstyleMagic)
            throw new NbdProtocolException("the server uses oldstyle negotiation, which this client does not support");
        if (second != NbdProtocol.OptMagic) throw new NbdProtocolException($"bad newstyle magic 0x{second:x}");
        ushort hsFlags = BinaryPrimitives.ReadUInt16BigEndian(b[16..]);
        // Without FIXED_NEWSTYLE only NBD_OPT_EXPORT_NAME is possible and a refused option closes the session.
        if ((hsFlags & NbdProtocol.FlagFixedNewstyle) == 0)
            throw new NbdProtocolException("the server does not support fixed newstyle negotiation");
        bool noZeroes = (hsFlags & NbdProtocol.FlagNoZeroes) != 0;
        // NO_ZEROES MUST NOT be set unless the server set it ("Client flags").
        uint clientFlags = NbdProtocol.ClientFixedNewstyle | (noZeroes ? NbdProtocol.ClientNoZeroes : 0);
        Span<byte> cf = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(cf, clientFlags);
        NbdSocket.SendAll(s, cf);

        bool structured = false;
        if (o.StructuredReplies)
        {
            SendOption(s, NbdProtocol.OptStructuredReply, []);
            var (type, payload) = ReadOptionReply(s, NbdProtocol.OptStructuredReply, ref watch);
            if (type == NbdProtocol.RepAck) structured = true;
            else if ((type & NbdProtocol.RepFlagError) == 0)
                throw new NbdProtocolException($"unexpected reply {NbdProtocol.RepName(type)} to NBD_OPT_STRUCTURED_REPLY");
            else if (type == NbdProtocol.RepErrShutdown) throw Refused("NBD_OPT_STRUCTURED_REPLY", type, payload);
            // Any other error: no structured replies; simple replies still work ("NBD_OPT_STRUCTURED_REPLY").
        }

        byte[] name = Encoding.UTF8.GetBytes(o.ExportName);
        var go = new byte[4 + name.Length + 2 + 2];
        BinaryPrimitives.WriteUInt32BigEndian(go, (uint)name.Length);
        name.CopyTo(go, 4);
        BinaryPrimitives.WriteUInt16BigEndian(go.AsSpan(4 + name.Length), 1);
        BinaryPrimitives.WriteUInt16BigEndian(go.AsSpan(6 + name.Length), NbdProtocol.InfoBlockSize);
        SendOption(s, NbdProtocol.OptGo, go);

        ulong? size = null;
        ushort txFlags = 0;
        bool blockSizes = false;
        uint min = 1, pref = 4096, max = NbdProtocol.DefaultMaxPayload;
        while (true)
        {
            var (type, p) = ReadOptionReply(s, NbdProtocol.OptGo, ref watch);
            if (type == NbdProtocol.RepInfo)
            {
                if (p.Length < 2) throw new NbdProtocolException("NBD_REP_INFO shorter than its type");
                ushort info = BinaryPrimitives.ReadUInt16BigEndian(p);
                if (info == NbdProtocol.InfoExport)
                {
                    if (p.Length != 12) throw new NbdProtocolException($"NBD_INFO_EXPORT of length {p.Length}, not 12");
                    size = BinaryPrimitives.ReadUInt64BigEndian(p.AsSpan(2));
                    txFlags = BinaryPrimitives.ReadUInt16BigEndian(p.AsSpan(10));
                }
                else if (info == NbdProtocol.InfoBlockSize)
                {
                    if (p.Length != 14) throw new NbdProtocolException($"NBD_INFO_BLOCK_SIZE of length {p.Length}, not 14");
                    min = BinaryPrimitives.ReadUInt32BigEndian(p.AsSpan(2));
                    pref = BinaryPrimitives.ReadUInt32BigEndian(p.AsSpan(6));
                    max = BinaryPrimitives.ReadUInt32BigEndian(p.AsSpan(10));
                    CheckBlockSizes(min, pref, max);
                    blockSizes = true;
                }
                // Other information types MUST be ignored ("NBD_REP_INFO").
                continue;
            }
            if (type == NbdProtocol.RepAck)
            {
                // The server MUST send NBD_INFO_EXPORT before NBD_REP_ACK.
                if (size == null) throw new NbdProtocolException("NBD_OPT_GO succeeded without NBD_INFO_EXPORT");
                break;
            }
            if (type == NbdProtocol.RepErrUnsup)
            {
                // Old servers: fall back to NBD_OPT_EXPORT_NAME ("NBD_OPT_INFO and NBD_OPT_GO").
                (size, txFlags) = ExportName(s, name, noZeroes, ref watch);
                blockSizes = false;
                min = 1; pref = 4096; max = NbdProtocol.DefaultMaxPayload;
                break;
            }
            if ((type & NbdProtocol.RepFlagError) != 0)
            {
                if (type == NbdProtocol.RepErrUnknown)
                    throw new IOException($"the server has no export '{o.ExportName}'{Message(p)}");
                throw Refused("NBD_OPT_GO", type, p);
            }
            throw new NbdProtocolException($"unexpected reply {NbdProtocol.RepName(type)} to NBD_OPT_GO");
        }
        if ((txFlags & NbdProtocol.TxHasFlags) == 0) throw new NbdProtocolException("transmission flags without NBD_FLAG_HAS_FLAGS");
        return new NbdExport
        {
            Size = size.Value, Flags = txFlags, Structured = structured, BlockSizeAdvertised = blockSizes,
            MinimumBlock = min, PreferredBlock = pref, MaximumPayload = max,
        };
    }

    /// <summary>The rules of "Size constraints": powers of two, minimum ≤ 64 KiB, preferred ≥ max(minimum, 512), maximum ≥ preferred.</summary>
    private static void CheckBlockSizes(uint min, uint pref, uint max)
    {
        if (min == 0 || !uint.IsPow2(min) || min > NbdProtocol.MaxMinimumBlock)
            throw new NbdProtocolException($"minimum block size {min} is not a power of two up to 65536");
        if (pref == 0 || !uint.IsPow2(pref) || pref < Math.Max(min, 512u))
            throw new NbdProtocolException($"preferred block size {pref} is not a power of two of at least max(minimum, 512)");
        if (max < pref) throw new NbdProtocolException($"maximum payload {max} is below the preferred block size {pref}");
    }

    private static (ulong, ushort) ExportName(Socket s, byte[] name, bool noZeroes, ref NbdSocket.DeadlineWatch watch)
    {
        SendOption(s, NbdProtocol.OptExportName, name);
        var reply = new byte[noZeroes ? 10 : 134];
        NbdSocket.ReceiveAll(s, reply, ref watch);
        return (BinaryPrimitives.ReadUInt64BigEndian(reply), BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(8)));
    }

    private static void SendOption(Socket s, uint option, ReadOnlySpan<byte> data)
    {
        var m = new byte[16 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(m, NbdProtocol.OptMagic);
        BinaryPrimitives.WriteUInt32BigEndian(m.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(m.AsSpan(12), (uint)data.Length);
        data.CopyTo(m.AsSpan(16));
        NbdSocket.SendAll(s, m);
    }

    private static (uint Type, byte[] Payload) ReadOptionReply(Socket s, uint option, ref NbdSocket.DeadlineWatch watch)
    {
        Span<byte> h = stackalloc byte[20];
        NbdSocket.ReceiveAll(s, h, ref watch);
        ulong magic = BinaryPrimitives.ReadUInt64BigEndian(h);
        if (magic != NbdProtocol.OptReplyMagic) throw new NbdProtocolException($"bad option reply magic 0x{magic:x}");
        uint opt = BinaryPrimitives.ReadUInt32BigEndian(h[8..]);
        if (opt != option) throw new NbdProtocolException($"reply to option {opt} while option {option} was asked");
        uint type = BinaryPrimitives.ReadUInt32BigEndian(h[12..]);
        uint len = BinaryPrimitives.ReadUInt32BigEndian(h[16..]);
        if (len > MaxOptionReply) throw new NbdProtocolException($"option reply of {len} bytes (at most {MaxOptionReply} expected)");
        var payload = new byte[len];
        NbdSocket.ReceiveAll(s, payload, ref watch);
        return (type, payload);
    }

    private static string Message(byte[] p) => p.Length == 0 ? "" : $": {NbdProtocol.Sanitize(p)}";

    private static IOException Refused(string option, uint type, byte[] p) =>
        new($"the server refused {option} with {NbdProtocol.RepName(type)}{Message(p)}");
}
