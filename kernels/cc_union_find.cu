// Union-find connected components of a label volume (gpueval.kernels.components._cc_cupy).
//
// Multi-label semantics of cc3d: a voxel connects to a neighbour holding the same non-zero key
// (binary=1: any non-zero neighbour). Every union links the larger root under the smaller one,
// so parent[i] <= i always (finds terminate, no locks) and each root ends up being the smallest
// linear index, i.e. the first voxel in C raster order, of its component. A prefix sum over
// roots then yields cc3d's numbering. 2-D volumes are passed as nz = 1.

// volatile: other threads re-link roots while we walk; always read the current pointer
__device__ __forceinline__ int find_root(const volatile int* parent, int i) {
    int p = parent[i];
    while (p != i) {
        i = p;
        p = parent[i];
    }
    return i;
}

__device__ void unite(int* parent, int a, int b) {
    while (true) {
        a = find_root(parent, a);
        b = find_root(parent, b);
        if (a == b) return;
        if (a < b) { int t = a; a = b; b = t; }
        int old = atomicCAS(&parent[a], a, b);   // link root a (larger) under b
        if (old == a) return;                     // else a gained a parent meanwhile: retry
    }
}

extern "C" __global__ void cc_init(const unsigned long long* keys, int* parent, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) parent[i] = keys[i] != 0ULL ? (int)i : -1;
}

extern "C" __global__ void cc_merge(const unsigned long long* keys, int* parent,
                                    int nz, int ny, int nx, const int* nbrs, int n_nbrs,
                                    int binary) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long size = (long long)nz * ny * nx;
    if (i >= size) return;
    unsigned long long v = keys[i];
    if (v == 0ULL) return;
    int x = (int)(i % nx);
    int y = (int)((i / nx) % ny);
    int z = (int)(i / ((long long)nx * ny));
    for (int k = 0; k < n_nbrs; ++k) {
        int zz = z + nbrs[3 * k], yy = y + nbrs[3 * k + 1], xx = x + nbrs[3 * k + 2];
        if (zz < 0 || yy < 0 || xx < 0 || zz >= nz || yy >= ny || xx >= nx) continue;
        long long j = ((long long)zz * ny + yy) * nx + xx;
        unsigned long long w = keys[j];
        if (w == 0ULL || (!binary && w != v)) continue;
        unite(parent, (int)i, (int)j);
    }
}

extern "C" __global__ void cc_compress(int* parent, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n && parent[i] >= 0) parent[i] = find_root(parent, (int)i);
}
