using System.Buffers.Binary;

// The wire format lives under Spec/ (shared by the device and the driver); the namespace stays
// VirtioSharp.Devices.Block so the public type names do not change.
namespace VirtioSharp.Devices.Block;

/// <summary>The 16-byte request header: type, reserved, sector.</summary>
internal readonly record struct BlkHeader(uint Type, ulong Sector)
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
