namespace VirtioSharp.Devices.Block;

/// <summary>A finished <see cref="BlockRequest"/>: its tag and its outcome.</summary>
/// <param name="Tag">The request's <see cref="BlockRequest.Tag"/>.</param>
/// <param name="Error">0 on success (every byte transferred), else a positive errno (EIO, ENOSPC, EOPNOTSUPP …).</param>
public readonly record struct BlockCompletion(ulong Tag, int Error)
{
    /// <summary>errno for "not supported by this storage": the device answers VIRTIO_BLK_S_UNSUPP.</summary>
    public const int NotSupported = 95;   // EOPNOTSUPP
    /// <summary>errno for an I/O error.</summary>
    public const int IoError = 5;         // EIO
}
