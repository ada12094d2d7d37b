using System.Buffers.Binary;

// The wire format lives under Spec/ (shared by the device and the driver); the namespace stays
// VirtioSharp.Devices.Block so the public type names do not change.
namespace VirtioSharp.Devices.Block;

/// <summary>A discard / write-zeroes segment: sector, number of sectors, flags.</summary>
internal readonly record struct BlkRangeSegment(ulong Sector, uint Sectors, uint Flags)
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
