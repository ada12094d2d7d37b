using System.Runtime.InteropServices;

namespace VirtioSharp.Spec;

/// <summary>
/// A packed-ring descriptor (virtio 1.2 §2.8.13): 16 bytes, little-endian. The same layout is used for available
/// descriptors, used descriptors and indirect table entries.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1, Size = 16)]
public struct PackedDesc
{
    /// <summary>Bytes of one packed descriptor in the ring (§2.8.13).</summary>
    public const int Size = 16;
    /// <summary>Byte offset of <see cref="Flags"/>: the field that publishes a descriptor (§2.8.21).</summary>
    public const int FlagsOffset = 14;
    /// <summary>Byte offset of <see cref="Len"/>: a used descriptor is written from here (len, id), then flags.</summary>
    public const int LenOffset = 8;
    /// <summary>Guest (bus) address of the buffer.</summary>
    public ulong Addr;
    /// <summary>Buffer length; for a used descriptor, the bytes the device wrote.</summary>
    public uint Len;
    /// <summary>Buffer id, returned by the device in the used descriptor.</summary>
    public ushort Id;
    /// <summary>AVAIL/USED wrap bits plus NEXT, WRITE and INDIRECT.</summary>
    public ushort Flags;

    /// <summary>A descriptor from its four fields, in host order.</summary>
    public PackedDesc(ulong addr, uint len, ushort id, ushort flags)
    {
        Addr = addr; Len = len; Id = id; Flags = flags;
    }
}
