namespace VirtioSharp.Storage.Nbd;

/// <summary>Wire constants of the NBD protocol (NetworkBlockDevice doc/proto.md, "Values"); all fields are big-endian.</summary>
internal static class NbdProtocol
{
    public const int DefaultPort = 10809;

    // Handshake magics ("Newstyle negotiation", "Fixed newstyle negotiation").
    public const ulong InitPasswd = 0x4e42444d41474943;   // "NBDMAGIC"
    public const ulong OptMagic = 0x49484156454F5054;     // "IHAVEOPT"
    public const ulong OldstyleMagic = 0x00420281861253;
    public const ulong OptReplyMagic = 0x3e889045565a9;

    // Handshake flags (server) and client flags.
    public const ushort FlagFixedNewstyle = 1 << 0;
    public const ushort FlagNoZeroes = 1 << 1;
    public const uint ClientFixedNewstyle = 1 << 0;
    public const uint ClientNoZeroes = 1 << 1;

    // Option types.
    public const uint OptExportName = 1;
    public const uint OptAbort = 2;
    public const uint OptGo = 7;
    public const uint OptStructuredReply = 8;

    // Option reply types; errors have bit 31 set.
    public const uint RepAck = 1;
    public const uint RepInfo = 3;
    public const uint RepFlagError = 1u << 31;
    public const uint RepErrUnsup = RepFlagError | 1;
    public const uint RepErrPolicy = RepFlagError | 2;
    public const uint RepErrInvalid = RepFlagError | 3;
    public const uint RepErrPlatform = RepFlagError | 4;
    public const uint RepErrTlsReqd = RepFlagError | 5;
    public const uint RepErrUnknown = RepFlagError | 6;
    public const uint RepErrShutdown = RepFlagError | 7;
    public const uint RepErrBlockSizeReqd = RepFlagError | 8;
    public const uint RepErrTooBig = RepFlagError | 9;

    // NBD_INFO types.
    public const ushort InfoExport = 0;
    public const ushort InfoBlockSize = 3;

    // Transmission flags.
    public const ushort TxHasFlags = 1 << 0;
    public const ushort TxReadOnly = 1 << 1;
    public const ushort TxSendFlush = 1 << 2;
    public const ushort TxSendFua = 1 << 3;
    public const ushort TxRotational = 1 << 4;
    public const ushort TxSendTrim = 1 << 5;
    public const ushort TxSendWriteZeroes = 1 << 6;
    public const ushort TxCanMultiConn = 1 << 8;

    // Transmission phase.
    public const uint RequestMagic = 0x25609513;
    public const uint SimpleReplyMagic = 0x67446698;
    public const uint StructuredReplyMagic = 0x668e33ef;
    public const int RequestSize = 28;
    public const int SimpleReplySize = 16;
    public const int StructuredReplySize = 20;

    // Commands and command flags.
    public const ushort CmdRead = 0;
    public const ushort CmdWrite = 1;
    public const ushort CmdDisc = 2;
    public const ushort CmdFlush = 3;
    public const ushort CmdTrim = 4;
    public const ushort CmdWriteZeroes = 6;
    public const ushort CmdFlagFua = 1 << 0;
    public const ushort CmdFlagNoHole = 1 << 1;

    // Structured reply flags and chunk types; error chunks have bit 15 set.
    public const ushort ReplyFlagDone = 1 << 0;
    public const ushort ReplyTypeNone = 0;
    public const ushort ReplyTypeOffsetData = 1;
    public const ushort ReplyTypeOffsetHole = 2;
    public const ushort ReplyTypeErrorBit = 1 << 15;
    public const ushort ReplyTypeError = ReplyTypeErrorBit | 1;
    public const ushort ReplyTypeErrorOffset = ReplyTypeErrorBit | 2;

    // Error values ("Error values").
    public const int EPerm = 1, EIo = 5, ENoMem = 12, EInval = 22, ENoSpc = 28, EOverflow = 75, ENotSup = 95, EShutdown = 108;

    /// <summary>Strings (names, messages) MUST be no longer than 4096 bytes ("Conventions").</summary>
    public const int MaxString = 4096;
    /// <summary>Read/write payload a client should stay under without advertised constraints ("Size constraints").</summary>
    public const uint DefaultMaxPayload = 1u << 25;
    /// <summary>Largest minimum block size a server may advertise ("Size constraints").</summary>
    public const uint MaxMinimumBlock = 1u << 16;

    /// <summary>
    /// An error value from the server as an errno for <c>BlockCompletion</c>: the defined values pass through, any other
    /// is treated as EINVAL ("Error values": the client SHOULD treat an unexpected value as NBD_EINVAL).
    /// </summary>
    public static int ToErrno(uint error) => error switch
    {
        EPerm or EIo or ENoMem or EInval or ENoSpc or EOverflow or ENotSup => (int)error,
        _ => EInval,
    };

    /// <summary>The name of an option reply error for messages.</summary>
    public static string RepName(uint type) => type switch
    {
        RepErrUnsup => "NBD_REP_ERR_UNSUP",
        RepErrPolicy => "NBD_REP_ERR_POLICY",
        RepErrInvalid => "NBD_REP_ERR_INVALID",
        RepErrPlatform => "NBD_REP_ERR_PLATFORM",
        RepErrTlsReqd => "NBD_REP_ERR_TLS_REQD",
        RepErrUnknown => "NBD_REP_ERR_UNKNOWN",
        RepErrShutdown => "NBD_REP_ERR_SHUTDOWN",
        RepErrBlockSizeReqd => "NBD_REP_ERR_BLOCK_SIZE_REQD",
        RepErrTooBig => "NBD_REP_ERR_TOO_BIG",
        _ => $"reply type 0x{type:x}",
    };

    /// <summary>A server-supplied string made safe for one log line: bounded, no control characters.</summary>
    public static string Sanitize(ReadOnlySpan<byte> utf8)
    {
        var s = System.Text.Encoding.UTF8.GetString(utf8[..Math.Min(utf8.Length, 512)]);
        var chars = s.ToCharArray();
        for (int i = 0; i < chars.Length; i++) if (char.IsControl(chars[i])) chars[i] = '?';
        return new string(chars);
    }
}
