using System.Buffers.Binary;

namespace VirtioSharp.VhostUser.Protocol;

/// <summary>Front-end requests (QEMU docs/interop/vhost-user.rst, "Front-end message types").</summary>
public enum VhostRequest : uint
{
    None = 0,
    GetFeatures = 1,
    SetFeatures = 2,
    SetOwner = 3,
    ResetOwner = 4,
    SetMemTable = 5,
    SetLogBase = 6,
    SetLogFd = 7,
    SetVringNum = 8,
    SetVringAddr = 9,
    SetVringBase = 10,
    GetVringBase = 11,
    SetVringKick = 12,
    SetVringCall = 13,
    SetVringErr = 14,
    GetProtocolFeatures = 15,
    SetProtocolFeatures = 16,
    GetQueueNum = 17,
    SetVringEnable = 18,
    SendRarp = 19,
    NetSetMtu = 20,
    SetBackendReqFd = 21,
    IotlbMsg = 22,
    SetVringEndian = 23,
    GetConfig = 24,
    SetConfig = 25,
    CreateCryptoSession = 26,
    CloseCryptoSession = 27,
    PostcopyAdvise = 28,
    PostcopyListen = 29,
    PostcopyEnd = 30,
    GetInflightFd = 31,
    SetInflightFd = 32,
    GpuSetSocket = 33,
    ResetDevice = 34,
    VringKick = 35,
    GetMaxMemSlots = 36,
    AddMemReg = 37,
    RemMemReg = 38,
    SetStatus = 39,
    GetStatus = 40,
}

/// <summary>Back-end requests sent on the back-end channel.</summary>
public enum VhostBackendRequest : uint
{
    IotlbMsg = 1,
    ConfigChangeMsg = 2,
    VringHostNotifierMsg = 3,
}

/// <summary>Protocol feature bits (GET/SET_PROTOCOL_FEATURES).</summary>
public static class VhostProtocolFeature
{
    public const int Mq = 0, LogShmfd = 1, Rarp = 2, ReplyAck = 3, Mtu = 4, BackendReq = 5, CrossEndian = 6;
    public const int CryptoSession = 7, Pagefault = 8, Config = 9, BackendSendFd = 10, HostNotifier = 11;
    public const int InflightShmfd = 12, ResetDevice = 13, InbandNotifications = 14, ConfigureMemSlots = 15, Status = 16;
}

/// <summary>The 12-byte message header: request, flags, payload size.</summary>
public readonly record struct VhostHeader(uint Request, uint Flags, uint Size)
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

/// <summary>One memory region of SET_MEM_TABLE / ADD_MEM_REG / REM_MEM_REG.</summary>
public readonly record struct VhostMemoryRegion(ulong GuestPhysAddr, ulong MemorySize, ulong UserspaceAddr, ulong MmapOffset)
{
    public const int Length = 32;
    public static VhostMemoryRegion Parse(ReadOnlySpan<byte> b) => new(
        BinaryPrimitives.ReadUInt64LittleEndian(b), BinaryPrimitives.ReadUInt64LittleEndian(b[8..]),
        BinaryPrimitives.ReadUInt64LittleEndian(b[16..]), BinaryPrimitives.ReadUInt64LittleEndian(b[24..]));

    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(b, GuestPhysAddr);
        BinaryPrimitives.WriteUInt64LittleEndian(b[8..], MemorySize);
        BinaryPrimitives.WriteUInt64LittleEndian(b[16..], UserspaceAddr);
        BinaryPrimitives.WriteUInt64LittleEndian(b[24..], MmapOffset);
    }
}

/// <summary>IOTLB message types and permissions (struct vhost_iotlb_msg).</summary>
public static class IotlbMsgType
{
    public const byte Miss = 1, Update = 2, Invalidate = 3, AccessFail = 4;
    public const byte PermNone = 0, PermRead = 1, PermWrite = 2, PermReadWrite = 3;
    /// <summary>iova u64, size u64, uaddr u64, perm u8, type u8, padding to 8.</summary>
    public const int Length = 32;
}

/// <summary>A bounds-checked little-endian reader over a message payload: every field read is checked once.</summary>
public ref struct PayloadReader(ReadOnlySpan<byte> data, VhostRequest request)
{
    private readonly ReadOnlySpan<byte> _data = data;
    private int _pos;

    private ReadOnlySpan<byte> Take(int n)
    {
        if (_data.Length - _pos < n)
            throw new Interop.VhostProtocolException($"{request}: payload of {_data.Length} bytes is too short (needed {n} more at offset {_pos})");
        var s = _data.Slice(_pos, n);
        _pos += n;
        return s;
    }

    public byte U8() => Take(1)[0];
    public ushort U16() => BinaryPrimitives.ReadUInt16LittleEndian(Take(2));
    public uint U32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));
    public ulong U64() => BinaryPrimitives.ReadUInt64LittleEndian(Take(8));
    public ReadOnlySpan<byte> Bytes(int n) => Take(n);
    public void Skip(int n) => Take(n);
    public int Remaining => _data.Length - _pos;
}
