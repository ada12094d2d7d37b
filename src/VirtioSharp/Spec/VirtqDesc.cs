using System.Runtime.InteropServices;

namespace VirtioSharp.Spec;

/// <summary>A split-ring descriptor as laid out in memory: 16 bytes, little-endian for modern devices (§2.7.5).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1, Size = 16)]
public struct VirtqDesc
{
    /// <summary>Bytes per descriptor.</summary>
    public const int Size = 16;
    /// <summary>Buffer address (guest-physical or IOVA).</summary>
    public ulong Addr;
    /// <summary>Buffer length in bytes.</summary>
    public uint Len;
    /// <summary>DescFlags bits.</summary>
    public ushort Flags;
    /// <summary>Next descriptor of the chain when NEXT is set.</summary>
    public ushort Next;

    /// <summary>A descriptor with these fields.</summary>
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
