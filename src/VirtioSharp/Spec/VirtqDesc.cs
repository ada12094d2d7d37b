using System.Runtime.InteropServices;

namespace VirtioSharp.Spec;

/// <summary>A split-ring descriptor as laid out in memory: 16 bytes, little-endian for modern devices (§2.7.5).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1, Size = 16)]
internal struct VirtqDesc
{
    public const int Size = 16;
    public ulong Addr;
    public uint Len;
    public ushort Flags;
    public ushort Next;

    public VirtqDesc(ulong addr, uint len, DescFlags flags, ushort next)
    {
        Addr = addr; Len = len; Flags = (ushort)flags; Next = next;
    }

    /// <summary>Converts between memory byte order and host order (a no-op on little-endian hosts for LE rings).</summary>
    public readonly VirtqDesc WithEndian(RingEndian endian) => endian.IsNative ? this : new VirtqDesc
    {
        Addr = System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(Addr),
        Len = System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(Len),
        Flags = System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(Flags),
        Next = System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(Next),
    };
}
