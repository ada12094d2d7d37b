using System.Buffers.Binary;

namespace VirtioSharp.VhostUser.Protocol;

/// <summary>The 12-byte message header: request, flags, payload size.</summary>
internal readonly record struct VhostHeader(uint Request, uint Flags, uint Size)
{
    public const int Length = 12;
    public const uint VersionMask = 0x3;
    public const uint Version = 0x1;
    public const uint ReplyFlag = 0x4;
    public const uint NeedReplyFlag = 0x8;
    /// <summary>Largest payload accepted; the biggest real message (GET_CONFIG with 256 config bytes) is far below.</summary>
    public const uint MaxPayload = 4096;
    /// <summary>VHOST_USER_F_PROTOCOL_FEATURES in GET_FEATURES.</summary>
    public const int ProtocolFeaturesBit = 30;
    /// <summary>VHOST_F_LOG_ALL: the front-end asks for every write to guest memory to be logged (vhost-user.rst "Migration").</summary>
    public const int LogAllBit = 26;

    public bool NeedReply => (Flags & NeedReplyFlag) != 0;

    public static VhostHeader Parse(ReadOnlySpan<byte> b) => new(
        BinaryPrimitives.ReadUInt32LittleEndian(b),
        BinaryPrimitives.ReadUInt32LittleEndian(b[4..]),
        BinaryPrimitives.ReadUInt32LittleEndian(b[8..]));

    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(b, Request);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(b[8..], Size);
    }
}
