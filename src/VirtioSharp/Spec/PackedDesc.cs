using System.Runtime.InteropServices;

namespace VirtioSharp.Spec;

/// <summary>
/// A packed-ring descriptor (virtio 1.2 §2.8.13): 16 bytes, little-endian. The same layout is used for available
/// descriptors, used descriptors and indirect table entries.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1, Size = 16)]
public struct PackedDesc
{
    public const int Size = 16;
    /// <summary>Byte offset of <see cref="Flags"/>: the field that publishes a descriptor (§2.8.21).</summary>
    public const int FlagsOffset = 14;
    /// <summary>Byte offset of <see cref="Len"/>: a used descriptor is written from here (len, id), then flags.</summary>
    public const int LenOffset = 8;
    public ulong Addr;
    public uint Len;
    public ushort Id;
    public ushort Flags;

    public PackedDesc(ulong addr, uint len, ushort id, ushort flags)
    {
        Addr = addr; Len = len; Id = id; Flags = flags;
    }
}
