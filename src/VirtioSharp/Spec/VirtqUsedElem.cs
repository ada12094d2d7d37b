using System.Runtime.InteropServices;

namespace VirtioSharp.Spec;

/// <summary>virtq_used_elem: 8 bytes (§2.7.8).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1, Size = 8)]
internal struct VirtqUsedElem
{
    public const int Size = 8;
    public uint Id;
    public uint Len;
}
