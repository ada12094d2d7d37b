namespace VirtioSharp.Spec;

/// <summary>virtq_desc flags (virtio 1.2 §2.7.5).</summary>
[Flags]
public enum DescFlags : ushort
{
    /// <summary>No flag.</summary>
    None = 0,
    /// <summary>VIRTQ_DESC_F_NEXT: the chain continues at next.</summary>
    Next = 1,
    /// <summary>VIRTQ_DESC_F_WRITE: device-writable buffer.</summary>
    Write = 2,
    /// <summary>VIRTQ_DESC_F_INDIRECT: the buffer is a table of descriptors (§2.7.5.3).</summary>
    Indirect = 4,
}
