using System.Buffers.Binary;

namespace VirtioSharp.Devices.Block;

/// <summary>virtio-blk request types and status values (virtio 1.2 §5.2.6).</summary>
public static class BlkRequestType
{
    public const uint In = 0, Out = 1, Flush = 4, GetId = 8, GetLifetime = 10, Discard = 11, WriteZeroes = 13, SecureErase = 14;
}

public enum BlkStatus : byte
{
    Ok = 0,
    IoErr = 1,
    Unsupp = 2,
}

/// <summary>virtio-blk constants and the config layout (§5.2.4).</summary>
public static class BlkSpec
{
    public const int SectorSize = 512;
    public const int SectorShift = 9;
    public const int HeaderSize = 16;
    public const int DiscardSegmentSize = 16;
    public const int IdBytes = 20;
    public const int ConfigSize = 60;
    public const uint WriteZeroesFlagUnmap = 1;

    // Config offsets.
    public const int Capacity = 0, SizeMax = 8, SegMax = 12, BlkSize = 20, Writeback = 32, NumQueues = 34;
    public const int MaxDiscardSectors = 36, MaxDiscardSeg = 40, DiscardSectorAlignment = 44;
    public const int MaxWriteZeroesSectors = 48, MaxWriteZeroesSeg = 52, WriteZeroesMayUnmap = 56;
}

/// <summary>The 16-byte request header: type, reserved, sector.</summary>
public readonly record struct BlkHeader(uint Type, ulong Sector)
{
    public static BlkHeader Parse(ReadOnlySpan<byte> b) =>
        new(BinaryPrimitives.ReadUInt32LittleEndian(b), BinaryPrimitives.ReadUInt64LittleEndian(b[8..]));

    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(b, Type);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], 0);
        BinaryPrimitives.WriteUInt64LittleEndian(b[8..], Sector);
    }
}

/// <summary>A discard / write-zeroes segment: sector, number of sectors, flags.</summary>
public readonly record struct BlkRangeSegment(ulong Sector, uint Sectors, uint Flags)
{
    public static BlkRangeSegment Parse(ReadOnlySpan<byte> b) => new(
        BinaryPrimitives.ReadUInt64LittleEndian(b),
        BinaryPrimitives.ReadUInt32LittleEndian(b[8..]),
        BinaryPrimitives.ReadUInt32LittleEndian(b[12..]));

    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(b, Sector);
        BinaryPrimitives.WriteUInt32LittleEndian(b[8..], Sectors);
        BinaryPrimitives.WriteUInt32LittleEndian(b[12..], Flags);
    }
}
