using System.Runtime.InteropServices;

namespace VirtioSharp.Spec;

/// <summary>virtq_used_elem: 8 bytes (§2.7.8).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1, Size = 8)]
public struct VirtqUsedElem
{
    /// <summary>Bytes per element.</summary>
    public const int Size = 8;
    /// <summary>Head of the chain (split) or buffer id that was used.</summary>
    public uint Id;
    /// <summary>Bytes the device wrote into the chain's writable part.</summary>
    public uint Len;
}
