namespace VirtioSharp.Devices;

/// <summary>What a device model supports beyond the virtio basics; a host offers transport features only where they hold.</summary>
[Flags]
public enum DeviceCapabilities
{
    /// <summary>Nothing beyond the basics.</summary>
    None = 0,
    /// <summary>
    /// Requests that were popped but never used may be handed to the device again after a restart (vhost-user.rst
    /// "Inflight I/O tracking"): processing one twice is harmless (a block read or write, entropy), unlike console
    /// output that would be printed twice.
    /// </summary>
    Resubmit = 1,
}
