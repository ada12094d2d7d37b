using System.Buffers.Binary;

namespace VirtioSharp.VhostUser.Protocol;

/// <summary>One memory region of SET_MEM_TABLE / ADD_MEM_REG / REM_MEM_REG.</summary>
internal readonly record struct VhostMemoryRegion(ulong GuestPhysAddr, ulong MemorySize, ulong UserspaceAddr, ulong MmapOffset)
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
