namespace VirtioSharp.Spec;

/// <summary>virtq_desc flags (virtio 1.2 §2.7.5).</summary>
[Flags]
internal enum DescFlags : ushort
{
    None = 0,
    Next = 1,
    Write = 2,
    Indirect = 4,
}
