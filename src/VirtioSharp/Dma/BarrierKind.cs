namespace VirtioSharp.Dma;

/// <summary>Barrier strength for ring publication (virtio 1.2 §6: VIRTIO_F_ORDER_PLATFORM).</summary>
public enum BarrierKind : byte
{
    /// <summary>SMP barriers (Linux virt_*): enough when the device is software on another CPU.</summary>
    Smp,
    /// <summary>Platform (mandatory) barriers: needed when the device is real hardware or offloaded.</summary>
    Platform,
}
